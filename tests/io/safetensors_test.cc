#include <cstring>
#include <fstream>

#include "lowbit/io/safetensors.h"
#include "support/test_support.h"

namespace lowbit::io {
namespace {

std::shared_ptr<Storage> buffer_of(const std::string& bytes) {
  auto s = Storage::allocate(bytes.size());
  std::memcpy(s->data(), bytes.data(), bytes.size());
  return s;
}

std::string image(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\x01');
}

TEST(Safetensors, ReadsReferenceFile) {
  auto r = SafetensorsReader::open(testing::golden_dir() / "dev-quant.safetensors");
  EXPECT_EQ(r.metadata().at("bitsandbytes"), "0.50.2.dev0");
  Tensor code = r.tensor("code.nf4");
  EXPECT_EQ(code.dtype(), DType::F32);
  EXPECT_EQ(code.shape(), (Shape{16}));
  EXPECT_FLOAT_EQ(code.data<float>()[0], -1.0f);
  EXPECT_FLOAT_EQ(code.data<float>()[15], 1.0f);
  EXPECT_EQ(r.tensor("input.x_bf16").dtype(), DType::BF16);
}

TEST(Safetensors, WriteThenReadRoundTrips) {
  auto dir = testing::temp_dir("st-roundtrip");
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector<int8_t>({-1, 7});
  save_safetensors(dir / "x.safetensors", {{"a", a}, {"b", b}}, {{"format", "pt"}});
  auto r = SafetensorsReader::open(dir / "x.safetensors");
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.tensor("a").shape(), (Shape{2, 3}));
  EXPECT_EQ(r.tensor("a").data<float>()[5], 6.0f);
  EXPECT_EQ(r.tensor("b").data<int8_t>()[0], -1);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors.tmp"));
}

TEST(Safetensors, UncommittedWriterLeavesNothing) {
  auto dir = testing::temp_dir("st-abort");
  {
    SafetensorsWriter w(dir / "y.safetensors");
    w.declare("a", DType::F32, {4});
    float v[4] = {1, 2, 3, 4};
    w.write("a", v, sizeof v);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

void expect_invalid(const std::string& bytes, const std::string& needle) {
  try {
    SafetensorsReader::from_buffer(buffer_of(bytes), "bad.safetensors");
    FAIL() << "accepted an invalid file; expected: " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(e.context().file, "bad.safetensors");
  }
}

TEST(Safetensors, RejectsBadHeaders) {
  expect_invalid("abc", "shorter than the 8-byte header");
  expect_invalid(std::string("\xff\xff\xff\xff\0\0\0\0", 8), "exceeds");
  expect_invalid(image("{}", 0).substr(0, 9), "past the end");
  expect_invalid(image("{not json", 0), "not valid JSON");
  expect_invalid(image("[]", 0), "not a JSON object");
  expect_invalid(image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), "past the end of the data");
  expect_invalid(image(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 12");
  expect_invalid(image(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8), "unsupported dtype");
  expect_invalid(image(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "non-negative");
  expect_invalid(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "overlaps");
  expect_invalid(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "gap");
  expect_invalid(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8), "cover");
  expect_invalid(image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8), "begin after");
  expect_invalid(image(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4),
                 "overflow");
  expect_invalid(image(R"({"__metadata__":{"a":1}})", 0), "not a string");
}

TEST(Safetensors, MissingFileNamesIt) {
  try {
    SafetensorsReader::open("/nonexistent/model.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.context().file, "/nonexistent/model.safetensors");
  }
}

}  // namespace
}  // namespace lowbit::io
