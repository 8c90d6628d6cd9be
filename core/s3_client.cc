// SPDX-License-Identifier: Apache-2.0
// Requests go through one function, Perform, so timeouts, signing, the
// error classification and the never-log-a-credential rule hold for every
// operation alike.
#include "core/s3_client.h"
#include "core/str_cat.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/s3_xml.h"

namespace hpfile {

namespace {

// An answer's body (XML) is read up to this size: a full listing page of
// 1000 long keys is well below it.
constexpr size_t kMaxBody = 16 << 20;

struct CurlFree {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
using CurlHandle = std::unique_ptr<CURL, CurlFree>;

struct SlistFree {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using Slist = std::unique_ptr<curl_slist, SlistFree>;

// Percent-encodes all but RFC 3986's unreserved characters. libcurl ignores
// the handle argument since 7.82.
std::string Escape(std::string_view text) {
  // A length of 0 would make curl take strlen of the rest.
  if (text.empty()) return {};
  char* escaped = curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size()));
  if (escaped == nullptr) throw std::bad_alloc();
  std::string out(escaped);
  curl_free(escaped);
  return out;
}

std::string Hex(std::span<const unsigned char> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char byte : bytes) {
    out += kDigits[byte >> 4];
    out += kDigits[byte & 15];
  }
  return out;
}

std::vector<unsigned char> Hash(std::span<const std::byte> data, const EVP_MD* type) {
  std::vector<unsigned char> digest(EVP_MAX_MD_SIZE);
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, type, nullptr) != 1) {
    throw std::runtime_error("EVP_Digest failed");
  }
  digest.resize(size);
  return digest;
}

std::vector<unsigned char> Md5(std::span<const std::byte> data) { return Hash(data, EVP_md5()); }

std::string Base64(std::span<const unsigned char> bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int size = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                   static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(size));
  return out;
}

// What an S3 server must answer as a simple upload's ETag, and the
// Content-MD5 header that makes it check the body itself.
struct ContentDigest {
  std::string etag;
  std::string content_md5;
};

ContentDigest Digest(std::span<const std::byte> data) {
  const auto md5 = Md5(data);
  return {.etag = Hex(md5), .content_md5 = Base64(md5)};
}

// S3's ETag of a multipart object: the MD5 of the parts' binary MD5s, a
// dash and the number of parts; nullopt when a part's ETag is no MD5.
std::optional<std::string> MultipartEtag(std::span<const UploadedPart> parts) {
  std::vector<std::byte> digests;
  for (const UploadedPart& part : parts) {
    if (part.etag.size() != 32) return std::nullopt;
    for (size_t i = 0; i < 32; i += 2) {
      unsigned value = 0;
      const auto [end, ec] = std::from_chars(part.etag.data() + i, part.etag.data() + i + 2, value, 16);
      if (ec != std::errc() || end != part.etag.data() + i + 2) return std::nullopt;
      digests.push_back(static_cast<std::byte>(value));
    }
  }
  return StrCat(Hex(Md5(digests)), "-", parts.size());
}

StoreErrorClass ClassifyCurl(CURLcode code) {
  switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_LOGIN_DENIED:
      return StoreErrorClass::kPermanent;
    default:
      return StoreErrorClass::kRetryable;
  }
}

std::string_view CurlCodeName(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT: return "Timeout";
    case CURLE_COULDNT_CONNECT: return "CouldNotConnect";
    case CURLE_COULDNT_RESOLVE_HOST: return "CouldNotResolveHost";
    case CURLE_PEER_FAILED_VERIFICATION: return "TlsVerificationFailed";
    case CURLE_PARTIAL_FILE: return "ShortBody";
    default: return "TransportError";
  }
}

// One request: what to send and where the answer goes.
struct Request {
  std::string_view operation;  // for messages: "PUT", "GET", ...
  std::string_view key;        // for messages and the path; empty for the bucket
  const char* method = "GET";
  std::string query;  // already encoded, parameters in byte order (SigV4 signs it so)
  std::vector<std::string> headers;
  std::span<const std::byte> body;
  // A GET range's destination; the body goes to Response::body otherwise.
  std::span<std::byte> sink;
  bool to_sink = false;
  bool head = false;
};

struct Response {
  long status = 0;
  std::string body;  // unless Request::to_sink with a 2xx answer
  uint64_t sink_written = 0;
  bool sink_overflow = false;
  std::optional<uint64_t> content_length;  // of a HEAD
  std::string etag;
  std::string content_range;
  CURL* curl = nullptr;
};

size_t AppendBody(Response& response, const char* data, size_t n) {
  if (response.body.size() + n > kMaxBody) return CURL_WRITEFUNC_ERROR;
  response.body.append(data, n);
  return n;
}

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  return AppendBody(*static_cast<Response*>(user), data, size * count);
}

struct SinkState {
  Response* response;
  std::span<std::byte> sink;
};

size_t WriteSink(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<SinkState*>(user);
  Response& response = *state->response;
  const size_t n = size * count;
  long status = 0;
  curl_easy_getinfo(response.curl, CURLINFO_RESPONSE_CODE, &status);
  // An error answer's XML is not the caller's data.
  if (status < 200 || status >= 300) return AppendBody(response, data, n);
  if (n > state->sink.size() - response.sink_written) {
    response.sink_overflow = true;
    return CURL_WRITEFUNC_ERROR;
  }
  std::memcpy(state->sink.data() + response.sink_written, data, n);
  response.sink_written += n;
  return n;
}

struct Upload {
  std::span<const std::byte> body;
  size_t sent = 0;
};

size_t ReadBody(char* out, size_t size, size_t count, void* user) {
  auto* upload = static_cast<Upload*>(user);
  const size_t n = std::min(size * count, upload->body.size() - upload->sent);
  std::memcpy(out, upload->body.data() + upload->sent, n);
  upload->sent += n;
  return n;
}

// Keeps the headers the client checks: ETag and Content-Range.
size_t ReadHeader(char* data, size_t size, size_t count, void* user) {
  auto* response = static_cast<Response*>(user);
  const size_t n = size * count;
  std::string_view line(data, n);
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return n;
  std::string name(line.substr(0, colon));
  std::ranges::transform(name, name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  if (name == "etag") {
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    response->etag = value;
  } else if (name == "content-range") {
    response->content_range = value;
  }
  return n;
}

std::string_view DefaultCode(long status) {
  switch (status) {
    case 400: return "BadRequest";
    case 403: return "AccessDenied";
    case 404: return "NotFound";
    case 416: return "InvalidRange";
    case 503: return "ServiceUnavailable";
    default: return status >= 500 ? "InternalError" : "HttpError";
  }
}

ObjectStoreError AnswerError(const Request& request, const std::string& bucket, const Response& response) {
  const auto parsed = s3xml::ParseError(response.body);
  const std::string code = parsed && !parsed->code.empty() ? parsed->code : std::string(DefaultCode(response.status));
  const std::string detail = parsed && !parsed->message.empty() ? ": " + parsed->message : std::string();
  return ObjectStoreError{
      .error_class = ClassifyS3Error(static_cast<int>(response.status), code),
      .http_status = static_cast<int>(response.status),
      .code = code,
      .message = StrCat(request.operation, " ", bucket, "/", request.key, ": HTTP ", response.status, " ", code, detail),
  };
}

ObjectStoreError WrongAnswer(const Request& request, const std::string& bucket, long status, std::string_view code,
                             std::string_view why, StoreErrorClass error_class = StoreErrorClass::kPermanent) {
  return ObjectStoreError{
      .error_class = error_class,
      .http_status = static_cast<int>(status),
      .code = std::string(code),
      .message = StrCat(request.operation, " ", bucket, "/", request.key, ": ", code, ": ", why),
  };
}

}  // namespace

StoreErrorClass ClassifyS3Error(int http_status, std::string_view code) {
  if (http_status >= 500 || http_status == 408 || http_status == 429) return StoreErrorClass::kRetryable;
  for (std::string_view transient : {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                                     "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed"}) {
    if (code == transient) return StoreErrorClass::kRetryable;
  }
  return StoreErrorClass::kPermanent;
}

std::string EncodeS3KeyPath(std::string_view key) {
  std::string path;
  size_t start = 0;
  while (true) {
    const size_t slash = key.find('/', start);
    path += Escape(key.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) break;
    path += '/';
    start = slash + 1;
  }
  return path;
}

struct S3Client::Impl {
  S3ClientOptions options;
  std::string base_url;  // endpoint without a trailing '/', then "/bucket"
  std::string sigv4;     // "aws:amz:REGION:s3"
  std::string userpwd;

  std::mutex pool_mu;
  std::vector<CurlHandle> pool;

  CurlHandle Take() {
    {
      std::lock_guard lock(pool_mu);
      if (!pool.empty()) {
        CurlHandle curl = std::move(pool.back());
        pool.pop_back();
        // Reset drops the options, keeps the connection cache.
        curl_easy_reset(curl.get());
        return curl;
      }
    }
    CurlHandle curl(curl_easy_init());
    if (!curl) throw std::bad_alloc();
    return curl;
  }

  void Give(CurlHandle curl) {
    std::lock_guard lock(pool_mu);
    pool.push_back(std::move(curl));
  }

  // Sends `request`; a transport failure or an answer outside 2xx is the
  // error, classified.
  StoreResult<Response> Perform(const Request& request);
};

StoreResult<Response> S3Client::Impl::Perform(const Request& request) {
  CurlHandle curl = Take();
  CURL* c = curl.get();
  Response response;
  response.curl = c;
  SinkState sink{.response = &response, .sink = request.sink};
  Upload upload{.body = request.body, .sent = 0};

  std::string url = base_url;
  if (!request.key.empty()) url += "/" + EncodeS3KeyPath(request.key);
  if (!request.query.empty()) url += "?" + request.query;

  Slist headers;
  auto add_header = [&headers](const std::string& header) {
    curl_slist* list = curl_slist_append(headers.get(), header.c_str());
    if (list == nullptr) throw std::bad_alloc();
    (void)headers.release();
    headers.reset(list);
  };
  for (const std::string& header : request.headers) add_header(header);
  // Not "Expect:" to drop curl's 100-continue: libcurl 7.88 would sign the
  // removed header, and the server would miss it.
  // SigV4 for S3 signs the payload's SHA-256, which the server checks;
  // libcurl 7.88 signs the value of this header when it is given.
  add_header("x-amz-content-sha256: " + Hex(Hash(request.body, EVP_sha256())));
  if (!options.credentials.session_token.empty()) {
    add_header("x-amz-security-token: " + options.credentials.session_token);
  }

  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options.request_timeout.count()));
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4.c_str());
  curl_easy_setopt(c, CURLOPT_USERPWD, userpwd.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, options.verify_tls ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, options.verify_tls ? 2L : 0L);
  if (!options.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, ReadHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &response);
  if (request.to_sink) {
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteSink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  } else {
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
  }
  if (request.head) {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (std::strcmp(request.method, "PUT") == 0) {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadBody);
    curl_easy_setopt(c, CURLOPT_READDATA, &upload);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  } else if (std::strcmp(request.method, "POST") == 0) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, reinterpret_cast<const char*>(request.body.data()));
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  } else if (std::strcmp(request.method, "GET") != 0) {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  const CURLcode code = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  curl_off_t length = -1;
  if (request.head) curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
  // The handle must not point at this call's stack once back in the pool.
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  Give(std::move(curl));
  response.curl = nullptr;

  if (response.sink_overflow) {
    return std::unexpected(WrongAnswer(request, options.bucket, response.status, "WrongLength",
                                       StrCat("the server sent more than the ", request.sink.size(), " bytes asked")));
  }
  if (code != CURLE_OK) {
    const std::string_view name = CurlCodeName(code);
    return std::unexpected(WrongAnswer(request, options.bucket, response.status, name, curl_easy_strerror(code),
                                       ClassifyCurl(code)));
  }
  if (response.status < 200 || response.status >= 300) {
    return std::unexpected(AnswerError(request, options.bucket, response));
  }
  if (request.head && length >= 0) response.content_length = static_cast<uint64_t>(length);
  return response;
}

Result<std::unique_ptr<S3Client>> S3Client::Create(S3ClientOptions options) {
  static std::once_flag curl_initialized;
  std::call_once(curl_initialized, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  while (options.endpoint.ends_with('/')) options.endpoint.pop_back();
  const bool web = options.endpoint.starts_with("http://") || options.endpoint.starts_with("https://");
  if (!web || options.bucket.empty() || options.bucket.find('/') != std::string::npos || options.region.empty() ||
      options.credentials.access_key_id.empty() || options.credentials.secret_access_key.empty() ||
      options.connect_timeout.count() <= 0 || options.request_timeout.count() <= 0) {
    return Errno(EINVAL);
  }
  auto impl = std::make_unique<Impl>();
  impl->base_url = options.endpoint + "/" + options.bucket;
  impl->sigv4 = "aws:amz:" + options.region + ":s3";
  impl->userpwd = options.credentials.access_key_id + ":" + options.credentials.secret_access_key;
  impl->options = std::move(options);
  return std::unique_ptr<S3Client>(new S3Client(std::move(impl)));
}

S3Client::S3Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
S3Client::~S3Client() = default;

namespace {

// A verified upload of `data` (a whole object or one part).
Request UploadRequest(std::string_view operation, std::string_view key, std::string query,
                      std::span<const std::byte> data, const ContentDigest& digest) {
  return Request{
      .operation = operation,
      .key = key,
      .method = "PUT",
      .query = std::move(query),
      .headers = {"Content-MD5: " + digest.content_md5, "Content-Type: application/octet-stream"},
      .body = data,
  };
}

}  // namespace

StoreResult<std::string> S3Client::Put(std::string_view key, std::span<const std::byte> data) {
  const ContentDigest digest = Digest(data);
  const Request request = UploadRequest("PUT", key, "", data, digest);
  auto response = impl_->Perform(request);
  if (!response) return std::unexpected(std::move(response.error()));
  if (response->etag != digest.etag) {
    return std::unexpected(WrongAnswer(request, impl_->options.bucket, response->status, "BadDigest",
                                       StrCat("ETag ", response->etag, " is not the content's MD5 ", digest.etag)));
  }
  return std::move(response->etag);
}

StoreResult<std::string> S3Client::CreateMultipartUpload(std::string_view key) {
  const Request request{.operation = "CreateMultipartUpload", .key = key, .method = "POST", .query = "uploads="};
  auto response = impl_->Perform(request);
  if (!response) return std::unexpected(std::move(response.error()));
  auto id = s3xml::RootChildText(response->body, "InitiateMultipartUploadResult", "UploadId");
  if (!id || id->empty()) {
    return std::unexpected(WrongAnswer(request, impl_->options.bucket, response->status, "MalformedXML",
                                       "no UploadId in the answer"));
  }
  return std::move(*id);
}

StoreResult<std::string> S3Client::UploadPart(std::string_view key, std::string_view upload_id, int part_number,
                                              std::span<const std::byte> data) {
  if (part_number < 1 || part_number > 10000) {
    return std::unexpected(InvalidRequest("UploadPart", key, "part number outside 1..10000"));
  }
  const ContentDigest digest = Digest(data);
  const std::string query = StrCat("partNumber=", part_number, "&uploadId=", Escape(upload_id));
  const Request request = UploadRequest("UploadPart", key, query, data, digest);
  auto response = impl_->Perform(request);
  if (!response) return std::unexpected(std::move(response.error()));
  if (response->etag != digest.etag) {
    return std::unexpected(WrongAnswer(request, impl_->options.bucket, response->status, "BadDigest",
                                       StrCat("part ", part_number, " ETag ", response->etag, " is not its MD5 ", digest.etag)));
  }
  return std::move(response->etag);
}

StoreResult<std::string> S3Client::CompleteMultipartUpload(std::string_view key, std::string_view upload_id,
                                                           std::span<const UploadedPart> parts) {
  if (parts.empty()) return std::unexpected(InvalidRequest("CompleteMultipartUpload", key, "no parts"));
  const std::string body = s3xml::CompleteMultipartBody(parts);
  const std::string query = "uploadId=" + Escape(upload_id);
  const Request request{
      .operation = "CompleteMultipartUpload",
      .key = key,
      .method = "POST",
      .query = query,
      .headers = {"Content-Type: application/xml"},
      .body = std::as_bytes(std::span(body)),
  };
  auto response = impl_->Perform(request);
  if (!response) return std::unexpected(std::move(response.error()));
  // S3 may answer 200 and still fail: the error then is in the body.
  if (s3xml::ParseError(response->body)) {
    response->status = 500;
    return std::unexpected(AnswerError(request, impl_->options.bucket, *response));
  }
  auto etag = s3xml::RootChildText(response->body, "CompleteMultipartUploadResult", "ETag");
  if (!etag) {
    return std::unexpected(WrongAnswer(request, impl_->options.bucket, response->status, "MalformedXML",
                                       "no ETag in the answer"));
  }
  // AWS, Ceph and MinIO answer S3's "MD5-of-MD5s-N" form, which proves the
  // right parts were joined; a server with another form (s3rver answers the
  // content's MD5) is taken at its word: every part was verified already.
  const auto expected = MultipartEtag(parts);
  if (expected && etag->find('-') != std::string::npos && *etag != *expected) {
    return std::unexpected(WrongAnswer(request, impl_->options.bucket, response->status, "BadDigest",
                                       StrCat("ETag ", *etag, " is not that of the parts sent, ", *expected)));
  }
  return std::move(*etag);
}

StoreResult<void> S3Client::AbortMultipartUpload(std::string_view key, std::string_view upload_id) {
  const std::string query = "uploadId=" + Escape(upload_id);
  auto response = impl_->Perform(
      Request{.operation = "AbortMultipartUpload", .key = key, .method = "DELETE", .query = query});
  if (!response) return std::unexpected(std::move(response.error()));
  return {};
}

StoreResult<void> S3Client::GetRange(std::string_view key, uint64_t offset, std::span<std::byte> out) {
  if (out.empty()) return std::unexpected(InvalidRequest("GET", key, "empty range"));
  const uint64_t last = offset + out.size() - 1;
  const Request request{
      .operation = "GET",
      .key = key,
      .method = "GET",
      .headers = {StrCat("Range: bytes=", offset, "-", last)},
      .sink = out,
      .to_sink = true,
  };
  auto response = impl_->Perform(request);
  if (!response) return std::unexpected(std::move(response.error()));
  const std::string& bucket = impl_->options.bucket;
  if (response->status == 206) {
    uint64_t first_sent = 0, last_sent = 0, total = 0;
    if (std::sscanf(response->content_range.c_str(), "bytes %" SCNu64 "-%" SCNu64 "/%" SCNu64, &first_sent,
                    &last_sent, &total) != 3 ||
        first_sent != offset) {
      return std::unexpected(WrongAnswer(request, bucket, 206, "WrongRange",
                                         StrCat("asked bytes ", offset, "-", last, ", got \"", response->content_range, "\"")));
    }
    if (last_sent < last) {
      return std::unexpected(WrongAnswer(request, bucket, 206, "InvalidRange",
                                         StrCat("bytes ", offset, "-", last, " reach past the end of the object (", total, " bytes)")));
    }
  } else if (offset != 0) {
    // A 200 is the whole object: only right if that is what was asked.
    return std::unexpected(WrongAnswer(request, bucket, response->status, "WrongRange",
                                       StrCat("asked bytes ", offset, "-", last, ", got the whole object")));
  }
  if (response->sink_written != out.size()) {
    return std::unexpected(WrongAnswer(request, bucket, response->status, "ShortBody",
                                       StrCat(response->sink_written, " of ", out.size(), " bytes"),
                                       StoreErrorClass::kRetryable));
  }
  return {};
}

StoreResult<uint64_t> S3Client::Head(std::string_view key) {
  const Request request{.operation = "HEAD", .key = key, .method = "HEAD", .head = true};
  auto response = impl_->Perform(request);
  if (!response) return std::unexpected(std::move(response.error()));
  if (!response->content_length) {
    return std::unexpected(WrongAnswer(request, impl_->options.bucket, response->status, "MissingLength",
                                       "no Content-Length in the answer"));
  }
  return *response->content_length;
}

StoreResult<ObjectListPage> S3Client::ListPage(std::string_view prefix, std::string_view continuation_token,
                                               int max_keys) {
  if (max_keys < 1) return std::unexpected(InvalidRequest("LIST", prefix, "max_keys below 1"));
  // The parameters in byte order, as SigV4's canonical request has them.
  std::string query;
  if (!continuation_token.empty()) query = "continuation-token=" + Escape(continuation_token) + "&";
  query += StrCat("list-type=2&max-keys=", std::min(max_keys, 1000), "&prefix=", Escape(prefix));
  const Request request{.operation = "LIST", .key = {}, .method = "GET", .query = query};
  auto response = impl_->Perform(request);
  if (!response) return std::unexpected(std::move(response.error()));
  auto page = s3xml::ParseListPage(response->body);
  if (!page) {
    return std::unexpected(WrongAnswer(request, impl_->options.bucket, response->status, "MalformedXML",
                                       StrCat("no ListBucketResult for prefix ", prefix)));
  }
  return std::move(*page);
}

StoreResult<void> S3Client::Delete(std::string_view key) {
  auto response = impl_->Perform(Request{.operation = "DELETE", .key = key, .method = "DELETE"});
  if (!response) return std::unexpected(std::move(response.error()));
  return {};
}

}  // namespace hpfile
