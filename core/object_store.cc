// SPDX-License-Identifier: Apache-2.0
#include "core/object_store.h"
#include "core/str_cat.h"

#include <algorithm>
#include <cerrno>

namespace hpfile {

int ObjectStoreError::errno_value() const {
  if (http_status == 404) return ENOENT;
  if (http_status == 403) return EACCES;
  if (code == "Timeout") return ETIMEDOUT;
  return EIO;
}

ObjectStoreError InvalidRequest(std::string_view operation, std::string_view key,
                                std::string_view why) {
  return ObjectStoreError{
      .error_class = StoreErrorClass::kPermanent,
      .http_status = 0,
      .code = "InvalidArgument",
      .message = StrCat(operation, " ", key, ": InvalidArgument: ", why),
  };
}

namespace {

// Sends `data` in parts of options.part_size into an upload already created.
StoreResult<std::string> UploadParts(ObjectStore& store, std::string_view key,
                                     std::string_view upload_id, std::span<const std::byte> data,
                                     uint64_t part_size) {
  std::vector<UploadedPart> parts;
  for (uint64_t offset = 0; offset < data.size(); offset += part_size) {
    const auto part = data.subspan(offset, std::min<uint64_t>(part_size, data.size() - offset));
    const int number = static_cast<int>(parts.size()) + 1;
    auto etag = store.UploadPart(key, upload_id, number, part);
    if (!etag) return std::unexpected(std::move(etag.error()));
    parts.push_back(UploadedPart{.number = number, .etag = std::move(*etag)});
  }
  return store.CompleteMultipartUpload(key, upload_id, parts);
}

}  // namespace

StoreResult<std::string> StoreObject(ObjectStore& store, std::string_view key,
                                     std::span<const std::byte> data,
                                     const UploadOptions& options) {
  if (data.size() <= options.multipart_threshold) return store.Put(key, data);
  if (options.part_size == 0) return std::unexpected(InvalidRequest("upload", key, "part size 0"));
  auto upload_id = store.CreateMultipartUpload(key);
  if (!upload_id) return std::unexpected(std::move(upload_id.error()));
  auto etag = UploadParts(store, key, *upload_id, data, options.part_size);
  if (!etag) {
    // The parts already stored cost money until aborted; the upload's own
    // error is what the caller needs, so an abort failure is not reported.
    (void)store.AbortMultipartUpload(key, *upload_id);
  }
  return etag;
}

StoreResult<std::vector<ObjectInfo>> ListAllObjects(ObjectStore& store, std::string_view prefix) {
  std::vector<ObjectInfo> all;
  std::string token;
  do {
    auto page = store.ListPage(prefix, token);
    if (!page) return std::unexpected(std::move(page.error()));
    std::ranges::move(page->objects, std::back_inserter(all));
    token = std::move(page->next_token);
  } while (!token.empty());
  return all;
}

}  // namespace hpfile
