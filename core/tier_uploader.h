// SPDX-License-Identifier: Apache-2.0
// Tiered storage's upload side: which sealed segments the local retention
// wants off the disk, and sending one segment to the object store with its
// checks. The step that makes an upload count (the manifest line) and the
// deletion of the local copy are TieredFile's (core/tiered_file.h), which
// orders them for crash safety.
//
// Every store call is retried with bounded exponential backoff while its
// error is retryable (TierRetry); a permanent error (403, a checksum
// mismatch) ends the attempt at once. Nothing here changes the local file.
//
// Thread-safety: the functions are safe from any number of threads; the
// store must be (ObjectStore is).
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/hpfile.h"
#include "core/io.h"
#include "core/object_store.h"
#include "core/retention.h"
#include "core/tier_manifest.h"

namespace hpfile {

// What failed in tiered storage, local or remote, as one value: the errno a
// file system would hand on, whether trying later can help, and a sentence
// for the log naming the object or file (never a credential).
struct TierError {
  int err = EIO;
  bool retryable = false;
  std::string message;
};
template <class T>
using TierResult = std::expected<T, TierError>;

TierError TierErrorOf(const ObjectStoreError& error);
TierError TierErrorOf(const std::error_code& error, std::string_view what);

// How store calls are retried: up to `max_attempts` calls in all, sleeping
// initial_backoff, then twice that, ..., at most max_backoff between them.
struct TierRetry {
  int max_attempts = 6;
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{5000};
  // Unset: std::this_thread::sleep_for. Tests count instead of sleeping.
  std::function<void(std::chrono::milliseconds)> sleep;
};

void SleepFor(std::chrono::milliseconds duration);

// Runs `call` (returning a StoreResult) under `retry`.
template <class Call>
auto WithRetries(const TierRetry& retry, Call&& call) -> decltype(call()) {
  std::chrono::milliseconds backoff = retry.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    auto result = call();
    if (result || !result.error().retryable() || attempt >= retry.max_attempts) return result;
    if (retry.sleep) {
      retry.sleep(backoff);
    } else {
      SleepFor(backoff);
    }
    backoff = std::min(retry.max_backoff, backoff * 2);
  }
}

// Where and how a file's segments go to the store.
struct TierStoreConfig {
  ObjectStore* store = nullptr;  // must outlive every user of the config
  // Key prefix inside the bucket, without a trailing slash; may be empty.
  std::string prefix;
  UploadOptions upload;
  TierRetry retry;
  // The chunk size new manifests get (checksums and cache pieces).
  uint64_t chunk_size = kDefaultTierChunkSize;
};

// Where a mount's objects go, from `tier_url=s3://BUCKET[/PREFIX]`.
struct TierUrl {
  std::string bucket;
  std::string prefix;  // without leading or trailing '/'; may be empty
};
// nullopt unless the scheme is s3:// and the bucket is a nonempty name
// without '/'. Slashes around the prefix are dropped; empty parts inside it
// ("a//b") are refused, since S3 keys would keep them.
std::optional<TierUrl> ParseTierUrl(std::string_view url);

// The sealed segments (never the last, the tail) that `local` lets go from
// the disk, oldest first and without a gap: only a run from the head can
// leave, so what stays local is always one contiguous range ending at the
// end of the file. `segments` in base order as HPFile::Segments() gives
// them; `last_write` gives a segment's last write in seconds since the
// epoch (its file's mtime). An empty policy lets nothing go.
std::vector<SegmentInfo> SegmentsToOffload(const std::vector<SegmentInfo>& segments, uint64_t size,
                                           const RetentionPolicy& local, int64_t now,
                                           const std::function<int64_t(const SegmentInfo&)>& last_write);

// Sends the sealed segment `segment` of the HPFile in `dir` as its object
// and checks it: the store verifies each request's MD5 (Content-MD5), then
// a HEAD must report the segment's length. Reads the file one part at a
// time (the whole file only when it goes as one Put, at most
// upload.multipart_threshold bytes), computing the chunk checksums on the
// way. A failed multipart upload is aborted (best effort). Returns the
// manifest line to record; the object is not trusted until that line is
// durable. EINVAL when part_size is not a multiple of `chunk_size`.
[[nodiscard]] TierResult<RemoteSegment> UploadSegment(Io& io, const TierStoreConfig& config,
                                                      const std::string& dir, std::string_view file_id,
                                                      uint64_t chunk_size, const SegmentInfo& segment);

}  // namespace hpfile
