// SPDX-License-Identifier: Apache-2.0
// Backing store format 1 (2 for a tiered file's meta): every name, key and
// constant of the on-disk layout. The writer, recovery and `hpfsctl check`
// all read them from here; this header holds no logic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace hpfile::format {

inline constexpr int kVersion = 1;
// A tiered file's meta (one with a file_id, see below) is of format 2; an
// untiered file's stays format 1, so older versions keep reading it.
inline constexpr int kTieredVersion = 2;
inline constexpr bool SupportedVersion(uint64_t version) { return version == 1 || version == 2; }

// An HPFile is a directory holding this file.
inline constexpr std::string_view kMetaName = "hpfile.meta";
// The meta file is replaced by writing this name, fsyncing it and renaming it
// over kMetaName.
inline constexpr std::string_view kMetaTempName = "hpfile.meta.tmp";
// Any name ending in this is an interrupted write of ours and is removed on open.
inline constexpr std::string_view kTempSuffix = ".tmp";

// Segment file: "<base:20 decimal digits>-<capacity decimal>.seg". The base is
// the virtual offset of the segment's first byte, the capacity the segment size
// in force when the segment was created.
inline constexpr int kSegmentBaseDigits = 20;
inline constexpr char kSegmentSeparator = '-';
inline constexpr std::string_view kSegmentSuffix = ".seg";

// Meta keys.
inline constexpr std::string_view kKeyFormat = "format";
inline constexpr std::string_view kKeySegmentSize = "segment_size";
inline constexpr std::string_view kKeyHead = "head";
inline constexpr std::string_view kKeyMode = "mode";
inline constexpr std::string_view kKeyUid = "uid";
inline constexpr std::string_view kKeyGid = "gid";
inline constexpr std::string_view kKeyRetainBytes = "retain_bytes";
inline constexpr std::string_view kKeyRetainSeconds = "retain_seconds";
// How much of a tiered file stays on local disk (the rest is offloaded).
inline constexpr std::string_view kKeyLocalRetainBytes = "local_retain_bytes";
inline constexpr std::string_view kKeyLocalRetainSeconds = "local_retain_seconds";
// Format 2 only: the file's identity in object names, 32 lowercase hex digits.
inline constexpr std::string_view kKeyFileId = "file_id";
inline constexpr size_t kFileIdHexDigits = 32;

// A tiered file's record of its segments in the object store
// (core/tier_manifest.h), replaced as the meta is.
inline constexpr std::string_view kRemoteManifestName = "hpfile.remote";
inline constexpr std::string_view kRemoteManifestTempName = "hpfile.remote.tmp";

// Names the daemon reserves at the top of a backing directory.
inline constexpr std::string_view kLockName = ".hpfs.lock";
inline constexpr std::string_view kTrashName = ".hpfs-trash";

inline constexpr uint64_t kDefaultSegmentSize = 64ull << 20;
// The largest segment_size. A segment a grow creates to span a gap of zeros
// may be wider: any multiple of the segment size, up to the gap.
inline constexpr uint64_t kMaxSegmentSize = 1ull << 40;
// The largest size a file may grow to (1 PiB); appends and grows past it fail
// with EFBIG. Bounds the segment files a grow creates where the backing
// filesystem caps a file's size (ext4: 16 TiB, so at most 128 for a grow).
inline constexpr uint64_t kMaxFileSize = 1ull << 50;
// Where a segment's slot may end at most, and the largest head: what a name
// or a meta may hold. Above kMaxFileSize because earlier versions let files
// grow this far, and their stores must still open.
inline constexpr uint64_t kMaxSlotEnd = (1ull << 63) - 1;

}  // namespace hpfile::format
