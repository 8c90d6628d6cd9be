// SPDX-License-Identifier: Apache-2.0
#include "core/fake_object_store.h"
#include "core/str_cat.h"

#include <algorithm>
#include <functional>

namespace hpfile {

namespace {

ObjectStoreError StoreError(StoreErrorClass error_class, int status, std::string_view code,
                            std::string_view operation, std::string_view key) {
  return ObjectStoreError{
      .error_class = error_class,
      .http_status = status,
      .code = std::string(code),
      .message = StrCat(operation, " ", key, ": HTTP ", status, " ", code),
  };
}

ObjectStoreError NotFound(std::string_view operation, std::string_view key, std::string_view code) {
  return StoreError(StoreErrorClass::kPermanent, 404, code, operation, key);
}

std::string_view OpName(StoreOp op) {
  switch (op) {
    case StoreOp::kPut: return "PUT";
    case StoreOp::kCreateMultipart: return "CreateMultipartUpload";
    case StoreOp::kUploadPart: return "UploadPart";
    case StoreOp::kComplete: return "CompleteMultipartUpload";
    case StoreOp::kAbort: return "AbortMultipartUpload";
    case StoreOp::kGet: return "GET";
    case StoreOp::kHead: return "HEAD";
    case StoreOp::kList: return "LIST";
    case StoreOp::kDelete: return "DELETE";
  }
  return "?";
}

// An opaque content tag: tests compare ETags with each other, never with a
// digest, so the fake needs no MD5.
std::string ContentTag(std::span<const std::byte> data) {
  const std::string_view bytes(reinterpret_cast<const char*>(data.data()), data.size());
  return StrCat(std::hex, std::hash<std::string_view>{}(bytes), "-", data.size());
}

}  // namespace

void FakeObjectStore::FailNext(int n, StoreErrorClass error_class, std::optional<StoreOp> only) {
  std::lock_guard lock(mu_);
  fail_next_ = n;
  fail_class_ = error_class;
  fail_only_ = only;
}

void FakeObjectStore::ShortenNextGets(int n) {
  std::lock_guard lock(mu_);
  shorten_next_ = n;
}

void FakeObjectStore::CorruptNextGets(int n) {
  std::lock_guard lock(mu_);
  corrupt_next_ = n;
}

uint64_t FakeObjectStore::Calls(StoreOp op) const {
  std::lock_guard lock(mu_);
  const auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

size_t FakeObjectStore::ObjectCount() const {
  std::lock_guard lock(mu_);
  return objects_.size();
}

size_t FakeObjectStore::PendingUploads() const {
  std::lock_guard lock(mu_);
  return uploads_.size();
}

StoreResult<void> FakeObjectStore::Enter(StoreOp op, std::string_view key) {
  ++calls_[op];
  if (fail_next_ == 0 || (fail_only_ && *fail_only_ != op)) return {};
  --fail_next_;
  if (fail_class_ == StoreErrorClass::kRetryable) {
    return std::unexpected(StoreError(fail_class_, 503, "SlowDown", OpName(op), key));
  }
  return std::unexpected(StoreError(fail_class_, 403, "AccessDenied", OpName(op), key));
}

StoreResult<std::string> FakeObjectStore::Put(std::string_view key, std::span<const std::byte> data) {
  std::lock_guard lock(mu_);
  if (auto ok = Enter(StoreOp::kPut, key); !ok) return std::unexpected(std::move(ok.error()));
  Object object{.data = {data.begin(), data.end()}, .etag = ContentTag(data)};
  std::string etag = object.etag;
  objects_.insert_or_assign(std::string(key), std::move(object));
  return etag;
}

StoreResult<std::string> FakeObjectStore::CreateMultipartUpload(std::string_view key) {
  std::lock_guard lock(mu_);
  if (auto ok = Enter(StoreOp::kCreateMultipart, key); !ok) return std::unexpected(std::move(ok.error()));
  std::string id = StrCat("upload-", next_upload_id_++);
  uploads_.emplace(id, Upload{.key = std::string(key), .parts = {}});
  return id;
}

StoreResult<std::string> FakeObjectStore::UploadPart(std::string_view key, std::string_view upload_id,
                                                     int part_number, std::span<const std::byte> data) {
  std::lock_guard lock(mu_);
  if (auto ok = Enter(StoreOp::kUploadPart, key); !ok) return std::unexpected(std::move(ok.error()));
  if (part_number < 1 || part_number > 10000) {
    return std::unexpected(InvalidRequest("UploadPart", key, "part number outside 1..10000"));
  }
  const auto it = uploads_.find(upload_id);
  if (it == uploads_.end() || it->second.key != key) return std::unexpected(NotFound("UploadPart", key, "NoSuchUpload"));
  Object part{.data = {data.begin(), data.end()}, .etag = ContentTag(data)};
  std::string etag = part.etag;
  it->second.parts.insert_or_assign(part_number, std::move(part));
  return etag;
}

StoreResult<std::string> FakeObjectStore::CompleteMultipartUpload(std::string_view key,
                                                                  std::string_view upload_id,
                                                                  std::span<const UploadedPart> parts) {
  std::lock_guard lock(mu_);
  if (auto ok = Enter(StoreOp::kComplete, key); !ok) return std::unexpected(std::move(ok.error()));
  const auto it = uploads_.find(upload_id);
  if (it == uploads_.end() || it->second.key != key) {
    return std::unexpected(NotFound("CompleteMultipartUpload", key, "NoSuchUpload"));
  }
  if (parts.empty()) return std::unexpected(InvalidRequest("CompleteMultipartUpload", key, "no parts"));
  Object whole;
  int previous = 0;
  for (const UploadedPart& part : parts) {
    const auto stored = it->second.parts.find(part.number);
    if (part.number <= previous || stored == it->second.parts.end() || stored->second.etag != part.etag) {
      return std::unexpected(StoreError(StoreErrorClass::kPermanent, 400, "InvalidPart",
                                        "CompleteMultipartUpload", key));
    }
    previous = part.number;
    whole.data.insert(whole.data.end(), stored->second.data.begin(), stored->second.data.end());
  }
  whole.etag = StrCat(ContentTag(whole.data), "-", parts.size());
  std::string etag = whole.etag;
  objects_.insert_or_assign(std::string(key), std::move(whole));
  uploads_.erase(it);
  return etag;
}

StoreResult<void> FakeObjectStore::AbortMultipartUpload(std::string_view key, std::string_view upload_id) {
  std::lock_guard lock(mu_);
  if (auto ok = Enter(StoreOp::kAbort, key); !ok) return ok;
  const auto it = uploads_.find(upload_id);
  if (it == uploads_.end() || it->second.key != key) {
    return std::unexpected(NotFound("AbortMultipartUpload", key, "NoSuchUpload"));
  }
  uploads_.erase(it);
  return {};
}

StoreResult<void> FakeObjectStore::GetRange(std::string_view key, uint64_t offset, std::span<std::byte> out) {
  std::lock_guard lock(mu_);
  if (auto ok = Enter(StoreOp::kGet, key); !ok) return ok;
  if (out.empty()) return std::unexpected(InvalidRequest("GET", key, "empty range"));
  const auto it = objects_.find(key);
  if (it == objects_.end()) return std::unexpected(NotFound("GET", key, "NoSuchKey"));
  const std::vector<std::byte>& data = it->second.data;
  if (offset >= data.size() || out.size() > data.size() - offset) {
    return std::unexpected(ObjectStoreError{
        .error_class = StoreErrorClass::kPermanent,
        .http_status = offset >= data.size() ? 416 : 206,
        .code = "InvalidRange",
        .message = StrCat("GET ", key, ": InvalidRange: bytes ", offset, "-", offset + out.size() - 1, " of an object of ", data.size(), " bytes"),
    });
  }
  const auto source = std::span(data).subspan(offset, out.size());
  if (shorten_next_ > 0) {
    --shorten_next_;
    std::ranges::copy(source.first(source.size() / 2), out.begin());
    return std::unexpected(ObjectStoreError{
        .error_class = StoreErrorClass::kRetryable,
        .http_status = 206,
        .code = "ShortBody",
        .message = StrCat("GET ", key, ": ShortBody: ", source.size() / 2, " of ", source.size(), " bytes"),
    });
  }
  std::ranges::copy(source, out.begin());
  if (corrupt_next_ > 0) {
    --corrupt_next_;
    out[out.size() / 2] ^= std::byte{0x5a};
  }
  return {};
}

StoreResult<uint64_t> FakeObjectStore::Head(std::string_view key) {
  std::lock_guard lock(mu_);
  if (auto ok = Enter(StoreOp::kHead, key); !ok) return std::unexpected(std::move(ok.error()));
  const auto it = objects_.find(key);
  if (it == objects_.end()) return std::unexpected(NotFound("HEAD", key, "NoSuchKey"));
  return it->second.data.size();
}

StoreResult<ObjectListPage> FakeObjectStore::ListPage(std::string_view prefix,
                                                      std::string_view continuation_token, int max_keys) {
  std::lock_guard lock(mu_);
  if (auto ok = Enter(StoreOp::kList, prefix); !ok) return std::unexpected(std::move(ok.error()));
  if (max_keys < 1) return std::unexpected(InvalidRequest("LIST", prefix, "max_keys below 1"));
  const size_t limit = static_cast<size_t>(std::min(max_keys, 1000));
  // The token is the last key of the previous page, as an opaque string.
  auto it = continuation_token.empty() ? objects_.lower_bound(prefix) : objects_.upper_bound(continuation_token);
  ObjectListPage page;
  for (; it != objects_.end() && it->first.starts_with(prefix); ++it) {
    if (page.objects.size() == limit) {
      page.next_token = page.objects.back().key;
      break;
    }
    page.objects.push_back(ObjectInfo{.key = it->first, .size = it->second.data.size(), .etag = it->second.etag});
  }
  return page;
}

StoreResult<void> FakeObjectStore::Delete(std::string_view key) {
  std::lock_guard lock(mu_);
  if (auto ok = Enter(StoreOp::kDelete, key); !ok) return ok;
  if (const auto it = objects_.find(key); it != objects_.end()) objects_.erase(it);
  return {};
}

}  // namespace hpfile
