// SPDX-License-Identifier: Apache-2.0
// The in-memory fake: the store contract, and the faults it injects for the
// tests of the uploader and the cache.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ranges>

#include "core/fake_object_store.h"
#include "tests/tier/store_contract.h"

namespace hpfile::testing {
namespace {

INSTANTIATE_TEST_SUITE_P(Fake, ObjectStoreContract,
                         ::testing::Values([] { return std::make_unique<FakeObjectStore>(); }));

std::vector<std::byte> Data(size_t size) {
  std::vector<std::byte> data(size);
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<std::byte>(i * 7);
  return data;
}

TEST(FakeObjectStore, FailNextFailsThatManyCallsWithTheClassThenRecovers) {
  FakeObjectStore store;
  store.FailNext(2, StoreErrorClass::kRetryable);
  auto first = store.Put("k", Data(10));
  ASSERT_FALSE(first);
  EXPECT_TRUE(first.error().retryable());
  EXPECT_EQ(first.error().http_status, 503);
  EXPECT_FALSE(store.Head("k"));
  EXPECT_EQ(store.ObjectCount(), 0u);
  EXPECT_TRUE(store.Put("k", Data(10)));
  store.FailNext(1, StoreErrorClass::kPermanent);
  auto denied = store.Head("k");
  ASSERT_FALSE(denied);
  EXPECT_FALSE(denied.error().retryable());
  EXPECT_EQ(denied.error().errno_value(), EACCES);
  EXPECT_EQ(store.Calls(StoreOp::kPut), 2u);
  EXPECT_EQ(store.Calls(StoreOp::kHead), 2u);
}

TEST(FakeObjectStore, FailNextOfOneOperationLeavesTheOthersAlone) {
  FakeObjectStore store;
  store.FailNext(1, StoreErrorClass::kRetryable, StoreOp::kUploadPart);
  const auto data = Data(3000);
  auto etag = StoreObject(store, "big", data, UploadOptions{.multipart_threshold = 1000, .part_size = 1000});
  ASSERT_FALSE(etag);
  EXPECT_TRUE(etag.error().retryable());
  // The failed upload was aborted: nothing half-made stays behind.
  EXPECT_EQ(store.PendingUploads(), 0u);
  EXPECT_EQ(store.Calls(StoreOp::kAbort), 1u);
  EXPECT_EQ(store.ObjectCount(), 0u);
  ASSERT_TRUE(StoreObject(store, "big", data, UploadOptions{.multipart_threshold = 1000, .part_size = 1000}));
  EXPECT_EQ(store.Calls(StoreOp::kUploadPart), 4u);
}

TEST(FakeObjectStore, ShortenedGetIsARetryableErrorNotAShortSuccess) {
  FakeObjectStore store;
  ASSERT_TRUE(store.Put("k", Data(100)));
  store.ShortenNextGets(1);
  std::vector<std::byte> out(100);
  auto got = store.GetRange("k", 0, out);
  ASSERT_FALSE(got);
  EXPECT_TRUE(got.error().retryable());
  EXPECT_EQ(got.error().code, "ShortBody");
  EXPECT_TRUE(store.GetRange("k", 0, out));
  EXPECT_EQ(out, Data(100));
}

TEST(FakeObjectStore, CorruptedGetSucceedsWithOneByteChanged) {
  FakeObjectStore store;
  ASSERT_TRUE(store.Put("k", Data(100)));
  store.CorruptNextGets(1);
  std::vector<std::byte> out(100);
  ASSERT_TRUE(store.GetRange("k", 0, out));
  const auto data = Data(100);
  EXPECT_EQ(std::ranges::count_if(std::views::iota(0, 100), [&](int i) { return out[i] != data[i]; }), 1);
  ASSERT_TRUE(store.GetRange("k", 0, out));
  EXPECT_EQ(out, data);
}

TEST(FakeObjectStore, AbortedMultipartUploadLeavesNoObject) {
  FakeObjectStore store;
  auto id = store.CreateMultipartUpload("k");
  ASSERT_TRUE(id);
  ASSERT_TRUE(store.UploadPart("k", *id, 1, Data(10)));
  ASSERT_TRUE(store.AbortMultipartUpload("k", *id));
  EXPECT_TRUE(store.Head("k").error().not_found());
  EXPECT_EQ(store.PendingUploads(), 0u);
  EXPECT_TRUE(store.AbortMultipartUpload("k", *id).error().not_found());
}

TEST(FakeObjectStore, MultipartObjectIsInvisibleUntilCompleted) {
  FakeObjectStore store;
  auto id = store.CreateMultipartUpload("k");
  ASSERT_TRUE(id);
  auto etag = store.UploadPart("k", *id, 1, Data(10));
  ASSERT_TRUE(etag);
  EXPECT_TRUE(store.Head("k").error().not_found());
  const UploadedPart wrong[] = {{.number = 1, .etag = "not-the-etag"}};
  EXPECT_FALSE(store.CompleteMultipartUpload("k", *id, wrong));
  const UploadedPart right[] = {{.number = 1, .etag = *etag}};
  ASSERT_TRUE(store.CompleteMultipartUpload("k", *id, right));
  EXPECT_EQ(store.Head("k").value_or(0), 10u);
  EXPECT_EQ(store.PendingUploads(), 0u);
}

}  // namespace
}  // namespace hpfile::testing
