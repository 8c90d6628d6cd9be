// SPDX-License-Identifier: Apache-2.0
#include "tests/tier/store_contract.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "core/str_cat.h"

namespace hpfile::testing {

namespace {

std::vector<std::byte> Pattern(size_t size, uint32_t seed) {
  std::vector<std::byte> data(size);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& byte : data) {
    x = x * 1103515245u + 12345u;
    byte = static_cast<std::byte>(x >> 24);
  }
  return data;
}

std::vector<std::byte> Bytes(std::string_view text) {
  const auto bytes = std::as_bytes(std::span(text));
  return {bytes.begin(), bytes.end()};
}

std::vector<std::byte> ReadWhole(ObjectStore& store, const std::string& key, size_t size) {
  std::vector<std::byte> out(size);
  auto got = store.GetRange(key, 0, out);
  EXPECT_TRUE(got.has_value()) << got.error().message;
  return out;
}

}  // namespace

void ObjectStoreContract::SetUp() {
  static std::atomic<int> counter{0};
  store_ = GetParam()();
  ASSERT_NE(store_, nullptr);
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  prefix_ = StrCat(info->name(), "-", getpid(), "-", counter++, "/");
  std::ranges::replace(prefix_, '/', '-');
  prefix_.back() = '/';
}

TEST_P(ObjectStoreContract, PutThenGetReturnsTheBytesAndHeadTheSize) {
  const auto data = Pattern(100000, 1);
  const std::string key = prefix() + "object";
  auto etag = store().Put(key, data);
  ASSERT_TRUE(etag) << etag.error().message;
  EXPECT_FALSE(etag->empty());
  EXPECT_EQ(ReadWhole(store(), key, data.size()), data);
  auto size = store().Head(key);
  ASSERT_TRUE(size) << size.error().message;
  EXPECT_EQ(*size, data.size());
}

TEST_P(ObjectStoreContract, PutReplacesTheObject) {
  const std::string key = prefix() + "object";
  ASSERT_TRUE(store().Put(key, Pattern(5000, 1)));
  const auto second = Pattern(300, 2);
  ASSERT_TRUE(store().Put(key, second));
  EXPECT_EQ(store().Head(key).value_or(0), 300u);
  EXPECT_EQ(ReadWhole(store(), key, second.size()), second);
}

TEST_P(ObjectStoreContract, GetRangeReturnsExactlyTheBytesAsked) {
  const auto data = Pattern(65536, 3);
  const std::string key = prefix() + "object";
  ASSERT_TRUE(store().Put(key, data));
  // Not {0, 1}: s3rver 3.7.1 answers bytes=0-0 with the whole object
  // (S3rverStore.WholeObjectForARangeIsAnError).
  for (const auto& [offset, length] : {std::pair<size_t, size_t>{0, 2}, {1000, 4096}, {65535, 1}, {12345, 53191}}) {
    std::vector<std::byte> out(length);
    auto got = store().GetRange(key, offset, out);
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_TRUE(std::ranges::equal(out, std::span(data).subspan(offset, length))) << offset << "+" << length;
  }
}

TEST_P(ObjectStoreContract, GetRangePastTheEndIsAPermanentErrorNeverShort) {
  const std::string key = prefix() + "object";
  ASSERT_TRUE(store().Put(key, Pattern(1000, 4)));
  std::vector<std::byte> out(100);
  // Starting past the end, and starting inside but reaching past it.
  for (uint64_t offset : {1000u, 5000u, 950u}) {
    auto got = store().GetRange(key, offset, out);
    ASSERT_FALSE(got) << "offset " << offset;
    EXPECT_FALSE(got.error().retryable()) << got.error().message;
    EXPECT_THAT(got.error().message, ::testing::HasSubstr(key));
  }
}

TEST_P(ObjectStoreContract, EmptyRangeIsAnInvalidRequest) {
  const std::string key = prefix() + "object";
  ASSERT_TRUE(store().Put(key, Pattern(10, 5)));
  auto got = store().GetRange(key, 0, {});
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, "InvalidArgument");
}

TEST_P(ObjectStoreContract, MissingObjectIsPermanentNotFoundNamingTheKey) {
  const std::string key = prefix() + "missing";
  std::vector<std::byte> out(10);
  auto got = store().GetRange(key, 0, out);
  ASSERT_FALSE(got);
  EXPECT_TRUE(got.error().not_found()) << got.error().message;
  EXPECT_FALSE(got.error().retryable());
  EXPECT_EQ(got.error().errno_value(), ENOENT);
  EXPECT_EQ(got.error().code, "NoSuchKey");
  EXPECT_THAT(got.error().message, ::testing::HasSubstr(key));
  auto size = store().Head(key);
  ASSERT_FALSE(size);
  EXPECT_TRUE(size.error().not_found()) << size.error().message;
}

TEST_P(ObjectStoreContract, DeleteRemovesAndDeletingAgainSucceeds) {
  const std::string key = prefix() + "object";
  ASSERT_TRUE(store().Put(key, Pattern(10, 6)));
  auto deleted = store().Delete(key);
  ASSERT_TRUE(deleted) << deleted.error().message;
  EXPECT_TRUE(store().Head(key).error().not_found());
  auto again = store().Delete(key);
  EXPECT_TRUE(again) << again.error().message;
}

TEST_P(ObjectStoreContract, ListFollowsContinuationTokensPastAThousandKeys) {
  constexpr int kKeys = 1005;
  std::vector<std::string> keys;
  for (int i = 0; i < kKeys; ++i) {
    const std::string number = std::to_string(i);
    keys.push_back(prefix() + "k" + std::string(5 - number.size(), '0') + number);
    auto put = store().Put(keys.back(), Bytes(std::to_string(i)));
    ASSERT_TRUE(put) << put.error().message;
  }
  // Not under the prefix: never listed.
  ASSERT_TRUE(store().Put(prefix().substr(0, prefix().size() - 1) + "-other", Bytes("x")));

  auto first = store().ListPage(prefix(), "");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->objects.size(), 1000u);
  EXPECT_FALSE(first->next_token.empty());

  auto all = ListAllObjects(store(), prefix());
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), static_cast<size_t>(kKeys));
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ((*all)[i].key, keys[i]);
    EXPECT_EQ((*all)[i].size, std::to_string(i).size());
  }
}

TEST_P(ObjectStoreContract, ListPageHonoursMaxKeys) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store().Put(StrCat(prefix(), i), Bytes("x")));
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto page = store().ListPage(prefix(), token, 2);
    ASSERT_TRUE(page) << page.error().message;
    EXPECT_LE(page->objects.size(), 2u);
    for (const ObjectInfo& info : page->objects) seen.push_back(info.key.substr(prefix().size()));
    token = page->next_token;
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(seen, ::testing::ElementsAre("0", "1", "2", "3", "4"));
}

TEST_P(ObjectStoreContract, MultipartUploadAssemblesThePartsInOrder) {
  // Parts of 5 MiB, the smallest S3 accepts but for the last.
  const auto data = Pattern((11 << 20) + 12345, 7);
  const std::string key = prefix() + "big";
  const UploadOptions options{.multipart_threshold = 5 << 20, .part_size = 5 << 20};
  auto etag = StoreObject(store(), key, data, options);
  ASSERT_TRUE(etag) << etag.error().message;
  EXPECT_FALSE(etag->empty());
  EXPECT_EQ(store().Head(key).value_or(0), data.size());
  EXPECT_EQ(ReadWhole(store(), key, data.size()), data);
  // Across the first part boundary.
  std::vector<std::byte> out(100);
  ASSERT_TRUE(store().GetRange(key, (5 << 20) - 50, out));
  EXPECT_TRUE(std::ranges::equal(out, std::span(data).subspan((5 << 20) - 50, 100)));
}

TEST_P(ObjectStoreContract, KeysWithOddCharactersRoundTrip) {
  const std::vector<std::string> names = {
      "with space/and+plus=equals&amp?query#hash",
      "percent%20literal~tilde!bang'quote(paren)*star,comma;semi:colon@at$dollar",
      "unicode/\u00fcn\u00efc\u00f8d\u00e9/\u65e5\u672c\u8a9e",
      "a/b/c/deep.seg",
  };
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string key = prefix() + names[i];
    auto put = store().Put(key, Bytes(names[i]));
    ASSERT_TRUE(put) << put.error().message;
    EXPECT_EQ(ReadWhole(store(), key, names[i].size()), Bytes(names[i])) << key;
    EXPECT_EQ(store().Head(key).value_or(0), names[i].size()) << key;
  }
  auto all = ListAllObjects(store(), prefix());
  ASSERT_TRUE(all) << all.error().message;
  std::vector<std::string> listed;
  for (const ObjectInfo& info : *all) listed.push_back(info.key.substr(prefix().size()));
  EXPECT_THAT(listed, ::testing::UnorderedElementsAreArray(names));
  for (const std::string& name : names) EXPECT_TRUE(store().Delete(prefix() + name));
}

}  // namespace hpfile::testing
