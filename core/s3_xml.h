// SPDX-License-Identifier: Apache-2.0
// The XML documents of the S3 API that the S3 client reads and writes, with
// libxml2. Internal to hpfile_s3. Element names are matched without their
// namespace: AWS sends http://s3.amazonaws.com/doc/2006-03-01/, some
// compatible servers none.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/object_store.h"

namespace hpfile::s3xml {

// An <Error> document's Code and Message; nullopt when `body` is not one.
struct ErrorBody {
  std::string code;
  std::string message;
};
std::optional<ErrorBody> ParseError(std::string_view body);

// A ListBucketResult (ListObjectsV2): nullopt when `body` is not one, or
// says IsTruncated without a NextContinuationToken, or a Size is no number.
std::optional<ObjectListPage> ParseListPage(std::string_view body);

// The text of the first element named `name` directly under the root
// element named `root` (InitiateMultipartUploadResult's UploadId,
// CompleteMultipartUploadResult's ETag); nullopt when there is none.
std::optional<std::string> RootChildText(std::string_view body, std::string_view root,
                                         std::string_view name);

// The CompleteMultipartUpload request body for `parts`.
std::string CompleteMultipartBody(std::span<const UploadedPart> parts);

}  // namespace hpfile::s3xml
