// SPDX-License-Identifier: Apache-2.0
// An ObjectStore in memory, for tests of what is built on the interface (the
// uploader, the remote-chunk cache): S3's semantics (replace on Put,
// multipart invisible until Complete, 1000-key pages in key order, Delete of
// a missing key succeeds) plus fault injection and call counts. Part of
// hpfile_testing, like FaultIo.
//
// Thread-safety: every call, including the fault and count controls, is safe
// from any number of threads (one mutex).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/object_store.h"

namespace hpfile {

enum class StoreOp { kPut, kCreateMultipart, kUploadPart, kComplete, kAbort, kGet, kHead, kList, kDelete };

class FakeObjectStore final : public ObjectStore {
 public:
  // The next `n` calls (of `only` if given, else of any operation) fail
  // with `error_class` (a 503 SlowDown when retryable, a 403 AccessDenied
  // when permanent) and change nothing. Counted calls include failed ones.
  void FailNext(int n, StoreErrorClass error_class, std::optional<StoreOp> only = std::nullopt);
  // The next `n` GetRange calls deliver only the first half of the range and
  // fail as the S3 client does on a body cut short (retryable).
  void ShortenNextGets(int n);
  // The next `n` GetRange calls succeed with one byte flipped, as a store
  // with damaged data would: only a checksum above this layer notices.
  void CorruptNextGets(int n);

  // How many calls of `op` were made (failed ones included).
  uint64_t Calls(StoreOp op) const;
  // The objects and the multipart uploads not completed or aborted.
  size_t ObjectCount() const;
  size_t PendingUploads() const;

  StoreResult<std::string> Put(std::string_view key, std::span<const std::byte> data) override;
  StoreResult<std::string> CreateMultipartUpload(std::string_view key) override;
  StoreResult<std::string> UploadPart(std::string_view key, std::string_view upload_id,
                                      int part_number, std::span<const std::byte> data) override;
  StoreResult<std::string> CompleteMultipartUpload(std::string_view key, std::string_view upload_id,
                                                   std::span<const UploadedPart> parts) override;
  StoreResult<void> AbortMultipartUpload(std::string_view key, std::string_view upload_id) override;
  StoreResult<void> GetRange(std::string_view key, uint64_t offset, std::span<std::byte> out) override;
  StoreResult<uint64_t> Head(std::string_view key) override;
  StoreResult<ObjectListPage> ListPage(std::string_view prefix, std::string_view continuation_token,
                                       int max_keys = 1000) override;
  StoreResult<void> Delete(std::string_view key) override;

 private:
  struct Object {
    std::vector<std::byte> data;
    std::string etag;
  };
  struct Upload {
    std::string key;
    std::map<int, Object> parts;
  };

  // Counts the call and returns the injected failure, if one is due.
  // Requires mu_.
  StoreResult<void> Enter(StoreOp op, std::string_view key);

  mutable std::mutex mu_;
  std::map<std::string, Object, std::less<>> objects_;
  std::map<std::string, Upload, std::less<>> uploads_;
  uint64_t next_upload_id_ = 1;
  std::map<StoreOp, uint64_t> calls_;
  int fail_next_ = 0;
  StoreErrorClass fail_class_ = StoreErrorClass::kRetryable;
  std::optional<StoreOp> fail_only_;
  int shorten_next_ = 0;
  int corrupt_next_ = 0;
};

}  // namespace hpfile
