// SPDX-License-Identifier: Apache-2.0
// An object store as tiered storage sees one: a flat namespace of immutable
// objects in one bucket, written whole (PUT, or multipart above a size) and
// read by byte range. The S3 client (core/s3_client.h, library hpfile_s3) and
// the in-memory fake for tests (core/fake_object_store.h) implement it.
//
// Every call is bounded in time by its implementation (the S3 client's
// connect and total timeouts) and fails with an ObjectStoreError that says
// whether trying again can help, so a caller decides retries and backoff
// without knowing HTTP.
//
// Thread-safety: implementations are safe for concurrent calls from any
// number of threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hpfile {

// Whether a failed call may succeed when made again unchanged.
//   kRetryable: no answer (connection refused or reset, timeout, DNS), 5xx,
//               429 or SlowDown, a body cut short in transit.
//   kPermanent: the request itself is wrong for this store: 400, 403
//               (AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId), 404
//               (NoSuchKey, NoSuchBucket), 416 (a range past the end), an
//               answer that contradicts the request (wrong ETag, wrong length).
enum class StoreErrorClass { kRetryable, kPermanent };

struct ObjectStoreError {
  StoreErrorClass error_class = StoreErrorClass::kPermanent;
  // The HTTP status of the answer, 0 when there was none.
  int http_status = 0;
  // The store's error code ("NoSuchKey", "SlowDown"), or for a failure
  // without an answer the transport's ("CouldNotConnect", "Timeout").
  std::string code;
  // For logs: the operation, the object key, the code and the store's
  // message. Never holds a credential.
  std::string message;

  bool retryable() const { return error_class == StoreErrorClass::kRetryable; }
  // 404: the object (or bucket) does not exist.
  bool not_found() const { return http_status == 404; }
  // The errno a file system hands on for it: ENOENT (404), EACCES (403),
  // ETIMEDOUT (a timeout), EIO otherwise.
  int errno_value() const;
};

template <class T>
using StoreResult = std::expected<T, ObjectStoreError>;

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  // As the store reports it, without quotes.
  std::string etag;
};

// One page of a listing. `next_token` is empty on the last page.
struct ObjectListPage {
  std::vector<ObjectInfo> objects;
  std::string next_token;
};

// One uploaded part of a multipart upload, as CompleteMultipartUpload needs it.
struct UploadedPart {
  int number = 0;  // 1-based, ascending
  std::string etag;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // Stores `data` as `key`, replacing any object of that name, and returns
  // its ETag. The store verifies the content (the S3 client sends its MD5 as
  // Content-MD5 and compares the returned ETag with it): a mismatch is a
  // permanent error and the object must not be trusted.
  [[nodiscard]] virtual StoreResult<std::string> Put(std::string_view key,
                                                     std::span<const std::byte> data) = 0;

  // Multipart upload: Create returns the upload id; UploadPart stores one part
  // (verified as Put verifies) and returns its ETag; Complete assembles the
  // parts in order into `key`; Abort drops an upload and its parts. Until
  // Complete succeeds `key` is unchanged. Parts but the last must be at least
  // 5 MiB on AWS S3.
  [[nodiscard]] virtual StoreResult<std::string> CreateMultipartUpload(std::string_view key) = 0;
  [[nodiscard]] virtual StoreResult<std::string> UploadPart(std::string_view key,
                                                            std::string_view upload_id,
                                                            int part_number,
                                                            std::span<const std::byte> data) = 0;
  // Complete returns the object's ETag (for S3, not the MD5 of the content).
  [[nodiscard]] virtual StoreResult<std::string> CompleteMultipartUpload(
      std::string_view key, std::string_view upload_id, std::span<const UploadedPart> parts) = 0;
  [[nodiscard]] virtual StoreResult<void> AbortMultipartUpload(std::string_view key,
                                                               std::string_view upload_id) = 0;

  // Reads exactly out.size() bytes of `key` starting at `offset`. Anything
  // else is an error, never a short success: a range reaching past the end
  // of the object is permanent (416 or a shorter Content-Range), a body cut
  // short in transit retryable. An empty `out` is a permanent
  // InvalidArgument error: HTTP has no empty byte range.
  [[nodiscard]] virtual StoreResult<void> GetRange(std::string_view key, uint64_t offset,
                                                   std::span<std::byte> out) = 0;

  // The size of `key` (404: not found).
  [[nodiscard]] virtual StoreResult<uint64_t> Head(std::string_view key) = 0;

  // One page (at most `max_keys`, at most 1000) of the objects whose key
  // starts with `prefix`, in key order, after `continuation_token` (empty:
  // from the start).
  [[nodiscard]] virtual StoreResult<ObjectListPage> ListPage(std::string_view prefix,
                                                             std::string_view continuation_token,
                                                             int max_keys = 1000) = 0;

  // Deletes `key`. Deleting a missing object succeeds, as on S3.
  [[nodiscard]] virtual StoreResult<void> Delete(std::string_view key) = 0;
};

// How StoreObject sends an object.
struct UploadOptions {
  // Objects larger than this go as multipart uploads.
  uint64_t multipart_threshold = 64ull << 20;
  // The size of every part but the last (S3: 5 MiB to 5 GiB).
  uint64_t part_size = 16ull << 20;
};

// Stores `data` as `key` with one Put, or above the threshold as a multipart
// upload, which it aborts (best effort) when a part or the completion fails.
// Returns the object's ETag.
[[nodiscard]] StoreResult<std::string> StoreObject(ObjectStore& store, std::string_view key,
                                                   std::span<const std::byte> data,
                                                   const UploadOptions& options = {});

// Every object under `prefix`, following continuation tokens to the end.
[[nodiscard]] StoreResult<std::vector<ObjectInfo>> ListAllObjects(ObjectStore& store,
                                                                  std::string_view prefix);

// The error for a request the caller got wrong before it reached the store
// (an empty range, a part number out of range): permanent, code
// "InvalidArgument".
[[nodiscard]] ObjectStoreError InvalidRequest(std::string_view operation, std::string_view key,
                                              std::string_view why);

}  // namespace hpfile
