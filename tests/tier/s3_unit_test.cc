// SPDX-License-Identifier: Apache-2.0
// The S3 client's parts that need no server: credentials, key encoding,
// error classification, the XML documents.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/s3_client.h"
#include "core/s3_xml.h"

namespace hpfile {
namespace {

TEST(S3Credentials, DefaultProfileOfASharedCredentialsFile) {
  auto credentials = ParseS3Credentials(
      "# comment\n[other]\naws_access_key_id = OTHER\naws_secret_access_key = othersecret\n\n"
      "[default]\r\naws_access_key_id=AKID\r\n  aws_secret_access_key =  s3cr3t/with+chars  \r\n"
      "aws_session_token = TOKEN\n");
  ASSERT_TRUE(credentials);
  EXPECT_EQ(credentials->access_key_id, "AKID");
  EXPECT_EQ(credentials->secret_access_key, "s3cr3t/with+chars");
  EXPECT_EQ(credentials->session_token, "TOKEN");
}

TEST(S3Credentials, NamedProfileAndItsErrors) {
  const std::string text = "[default]\naws_access_key_id=A\naws_secret_access_key=B\n[ tier ]\naws_access_key_id=C\n";
  auto other = ParseS3Credentials(text, "missing");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error(), std::errc::no_such_file_or_directory);
  auto incomplete = ParseS3Credentials(text, "tier");
  ASSERT_FALSE(incomplete);
  EXPECT_EQ(incomplete.error(), std::errc::invalid_argument);
}

TEST(S3Credentials, ReadFromAFile) {
  const std::string path = (std::filesystem::temp_directory_path() / "hpfs-creds-test").string() +
                           std::to_string(getpid());
  std::ofstream(path) << "[p]\naws_access_key_id=K\naws_secret_access_key=S\n";
  auto credentials = ReadS3CredentialsFile(path, "p");
  std::filesystem::remove(path);
  ASSERT_TRUE(credentials);
  EXPECT_EQ(credentials->access_key_id, "K");
  EXPECT_EQ(ReadS3CredentialsFile(path).error(), std::errc::no_such_file_or_directory);
}

TEST(S3Credentials, FromTheEnvironmentOnlyWithKeyAndSecret) {
  setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
  unsetenv("AWS_SECRET_ACCESS_KEY");
  EXPECT_FALSE(S3CredentialsFromEnvironment());
  setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
  setenv("AWS_SESSION_TOKEN", "ENVTOKEN", 1);
  auto credentials = S3CredentialsFromEnvironment();
  ASSERT_TRUE(credentials);
  EXPECT_EQ(credentials->secret_access_key, "ENVSECRET");
  EXPECT_EQ(credentials->session_token, "ENVTOKEN");
}

TEST(S3KeyPath, EncodesEverySegmentButKeepsTheSlashes) {
  EXPECT_EQ(EncodeS3KeyPath("plain-key_1.seg~"), "plain-key_1.seg~");
  EXPECT_EQ(EncodeS3KeyPath("a b/c+d/e=f&g?h#i%j"), "a%20b/c%2Bd/e%3Df%26g%3Fh%23i%25j");
  EXPECT_EQ(EncodeS3KeyPath("\u00fc/\u65e5"), "%C3%BC/%E6%97%A5");
  EXPECT_EQ(EncodeS3KeyPath("a//b/"), "a//b/");
}

TEST(S3Errors, ClassifiedByStatusAndCode) {
  EXPECT_EQ(ClassifyS3Error(503, "SlowDown"), StoreErrorClass::kRetryable);
  EXPECT_EQ(ClassifyS3Error(500, "InternalError"), StoreErrorClass::kRetryable);
  EXPECT_EQ(ClassifyS3Error(429, ""), StoreErrorClass::kRetryable);
  EXPECT_EQ(ClassifyS3Error(400, "RequestTimeout"), StoreErrorClass::kRetryable);
  EXPECT_EQ(ClassifyS3Error(403, "AccessDenied"), StoreErrorClass::kPermanent);
  EXPECT_EQ(ClassifyS3Error(403, "SignatureDoesNotMatch"), StoreErrorClass::kPermanent);
  EXPECT_EQ(ClassifyS3Error(404, "NoSuchKey"), StoreErrorClass::kPermanent);
  EXPECT_EQ(ClassifyS3Error(404, "NoSuchBucket"), StoreErrorClass::kPermanent);
  EXPECT_EQ(ClassifyS3Error(400, "InvalidArgument"), StoreErrorClass::kPermanent);
  EXPECT_EQ(ClassifyS3Error(416, "InvalidRange"), StoreErrorClass::kPermanent);
}

TEST(S3Xml, ListPageWithAndWithoutNamespace) {
  auto page = s3xml::ParseListPage(
      R"(<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">)"
      R"(<IsTruncated>true</IsTruncated><Contents><Key>a &amp; b</Key><Size>12</Size><ETag>&quot;abc&quot;</ETag>)"
      R"(</Contents><Contents><Key>c</Key><Size>0</Size></Contents><NextContinuationToken>tok/+=</NextContinuationToken>)"
      R"(</ListBucketResult>)");
  ASSERT_TRUE(page);
  ASSERT_EQ(page->objects.size(), 2u);
  EXPECT_EQ(page->objects[0].key, "a & b");
  EXPECT_EQ(page->objects[0].size, 12u);
  EXPECT_EQ(page->objects[0].etag, "abc");
  EXPECT_EQ(page->next_token, "tok/+=");
  auto last = s3xml::ParseListPage("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
  ASSERT_TRUE(last);
  EXPECT_TRUE(last->next_token.empty());
  EXPECT_FALSE(s3xml::ParseListPage("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"));
  EXPECT_FALSE(s3xml::ParseListPage("<ListBucketResult><Contents><Key>k</Key><Size>x</Size></Contents></ListBucketResult>"));
  EXPECT_FALSE(s3xml::ParseListPage("not xml"));
}

TEST(S3Xml, ErrorBodyAndCompleteRequest) {
  auto error = s3xml::ParseError("<Error><Code>NoSuchKey</Code><Message>gone</Message><Key>k</Key></Error>");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "NoSuchKey");
  EXPECT_EQ(error->message, "gone");
  EXPECT_FALSE(s3xml::ParseError("<ListBucketResult/>"));
  const UploadedPart parts[] = {{.number = 1, .etag = "e1"}, {.number = 2, .etag = "<&>"}};
  const std::string body = s3xml::CompleteMultipartBody(parts);
  EXPECT_THAT(body, ::testing::HasSubstr("<Part><PartNumber>1</PartNumber><ETag>\"e1\"</ETag></Part>"));
  EXPECT_THAT(body, ::testing::HasSubstr("<ETag>\"&lt;&amp;&gt;\"</ETag>"));
}

TEST(S3Client, RejectsAnIncompleteConfiguration) {
  const S3Credentials credentials{.access_key_id = "k", .secret_access_key = "s", .session_token = ""};
  EXPECT_TRUE(S3Client::Create({.endpoint = "http://127.0.0.1:1/", .bucket = "b", .credentials = credentials}));
  EXPECT_FALSE(S3Client::Create({.endpoint = "ftp://host", .bucket = "b", .credentials = credentials}));
  EXPECT_FALSE(S3Client::Create({.endpoint = "http://host", .bucket = "", .credentials = credentials}));
  EXPECT_FALSE(S3Client::Create({.endpoint = "http://host", .bucket = "b", .credentials = {}}));
}

}  // namespace
}  // namespace hpfile
