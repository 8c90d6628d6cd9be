// SPDX-License-Identifier: Apache-2.0
#include "core/s3_xml.h"
#include "core/str_cat.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <charconv>
#include <climits>
#include <memory>
#include <new>

namespace hpfile::s3xml {

namespace {

struct DocFree {
  void operator()(xmlDoc* doc) const { xmlFreeDoc(doc); }
};
using Doc = std::unique_ptr<xmlDoc, DocFree>;

Doc ReadDoc(std::string_view body) {
  if (body.empty() || body.size() > INT_MAX) return nullptr;
  // No network access and no entity expansion: the body comes from a server.
  return Doc(xmlReadMemory(body.data(), static_cast<int>(body.size()), nullptr, nullptr,
                           XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
}

bool Named(const xmlNode* node, std::string_view name) {
  return node->type == XML_ELEMENT_NODE && reinterpret_cast<const char*>(node->name) == name;
}

std::string Text(const xmlNode* node) {
  xmlChar* content = xmlNodeGetContent(node);
  if (content == nullptr) return {};
  std::string text(reinterpret_cast<const char*>(content));
  xmlFree(content);
  return text;
}

// The first child of `parent` named `name`, or null.
const xmlNode* Child(const xmlNode* parent, std::string_view name) {
  for (const xmlNode* child = parent->children; child != nullptr; child = child->next) {
    if (Named(child, name)) return child;
  }
  return nullptr;
}

std::string ChildText(const xmlNode* parent, std::string_view name) {
  const xmlNode* child = Child(parent, name);
  return child == nullptr ? std::string() : Text(child);
}

const xmlNode* Root(const Doc& doc, std::string_view name) {
  if (!doc) return nullptr;
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  return root != nullptr && Named(root, name) ? root : nullptr;
}

// S3 quotes ETags; the interface hands them on bare.
std::string Unquote(std::string etag) {
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') return etag.substr(1, etag.size() - 2);
  return etag;
}

}  // namespace

std::optional<ErrorBody> ParseError(std::string_view body) {
  const Doc doc = ReadDoc(body);
  const xmlNode* root = Root(doc, "Error");
  if (root == nullptr) return std::nullopt;
  return ErrorBody{.code = ChildText(root, "Code"), .message = ChildText(root, "Message")};
}

std::optional<ObjectListPage> ParseListPage(std::string_view body) {
  const Doc doc = ReadDoc(body);
  const xmlNode* root = Root(doc, "ListBucketResult");
  if (root == nullptr) return std::nullopt;
  ObjectListPage page;
  for (const xmlNode* child = root->children; child != nullptr; child = child->next) {
    if (!Named(child, "Contents")) continue;
    ObjectInfo info{.key = ChildText(child, "Key"), .size = 0, .etag = Unquote(ChildText(child, "ETag"))};
    const std::string size = ChildText(child, "Size");
    const auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), info.size);
    if (ec != std::errc() || end != size.data() + size.size() || size.empty()) return std::nullopt;
    page.objects.push_back(std::move(info));
  }
  if (ChildText(root, "IsTruncated") == "true") {
    page.next_token = ChildText(root, "NextContinuationToken");
    if (page.next_token.empty()) return std::nullopt;
  }
  return page;
}

std::optional<std::string> RootChildText(std::string_view body, std::string_view root_name,
                                         std::string_view name) {
  const Doc doc = ReadDoc(body);
  const xmlNode* root = Root(doc, root_name);
  if (root == nullptr) return std::nullopt;
  const xmlNode* child = Child(root, name);
  if (child == nullptr) return std::nullopt;
  return Unquote(Text(child));
}

std::string CompleteMultipartBody(std::span<const UploadedPart> parts) {
  Doc doc(xmlNewDoc(reinterpret_cast<const xmlChar*>("1.0")));
  xmlNode* root = xmlNewNode(nullptr, reinterpret_cast<const xmlChar*>("CompleteMultipartUpload"));
  xmlDocSetRootElement(doc.get(), root);
  for (const UploadedPart& part : parts) {
    xmlNode* node = xmlNewChild(root, nullptr, reinterpret_cast<const xmlChar*>("Part"), nullptr);
    const std::string number = std::to_string(part.number);
    const std::string etag = StrCat("\"", part.etag, "\"");
    // xmlNewTextChild escapes the text, unlike xmlNewChild.
    xmlNewTextChild(node, nullptr, reinterpret_cast<const xmlChar*>("PartNumber"),
                    reinterpret_cast<const xmlChar*>(number.c_str()));
    xmlNewTextChild(node, nullptr, reinterpret_cast<const xmlChar*>("ETag"),
                    reinterpret_cast<const xmlChar*>(etag.c_str()));
  }
  xmlChar* text = nullptr;
  int size = 0;
  xmlDocDumpMemoryEnc(doc.get(), &text, &size, "UTF-8");
  if (text == nullptr) throw std::bad_alloc();
  std::string body(reinterpret_cast<const char*>(text), static_cast<size_t>(size));
  xmlFree(text);
  return body;
}

}  // namespace hpfile::s3xml
