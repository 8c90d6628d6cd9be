#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""An HTTP server that checks every request's AWS Signature V4 the way S3
does, with botocore's signer (Debian: python3-botocore), because s3rver
checks none. It keeps no objects: it answers just enough for the S3 client
to accept the answer (an ETag equal to the body's MD5 for a PUT, an empty
listing, 204 for a DELETE) and 403 SignatureDoesNotMatch when the signature,
the signed payload hash or the Content-MD5 is wrong.

Usage: sigv4_server.py ACCESS_KEY_ID SECRET_ACCESS_KEY REGION
Prints "listening on 127.0.0.1:PORT" once it accepts connections.
"""
import base64
import hashlib
import hmac
import http.server
import re
import sys

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

AUTH = re.compile(r'AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, '
                  r'SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$')


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    key_id = secret = region = ''

    def log_message(self, format, *args):  # one line per request, to the log
        sys.stdout.write('%s\n' % (format % args))
        sys.stdout.flush()

    def answer(self, status, headers=(), body=b''):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def refuse(self, code, why):
        sys.stdout.write('refused %s %s: %s %s\n' % (self.command, self.path, code, why))
        body = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code>'
                '<Message>%s</Message></Error>' % (code, why)).encode()
        self.answer(403, [('Content-Type', 'application/xml')], body)

    def check(self, body):
        """None when the request is signed right, else why not."""
        match = AUTH.match(self.headers.get('Authorization', ''))
        if not match:
            return 'no SigV4 Authorization header'
        key_id, date, region, signed, signature = match.groups()
        if key_id != self.key_id or region != self.region:
            return 'wrong key id or region'
        payload = self.headers.get('x-amz-content-sha256', '')
        if payload != hashlib.sha256(body).hexdigest():
            return 'x-amz-content-sha256 is not the SHA-256 of the body'
        md5 = self.headers.get('Content-MD5')
        if md5 is not None and md5 != base64.b64encode(hashlib.md5(body).digest()).decode():
            return 'Content-MD5 is not the MD5 of the body'
        names = signed.split(';')
        missing = [n for n in names if n not in self.headers]
        if missing:
            return 'signed headers not sent: ' + ', '.join(missing)
        for must in ('host', 'x-amz-date', 'x-amz-content-sha256', 'content-md5', 'x-amz-security-token'):
            if must not in names and (must in ('host', 'x-amz-date', 'x-amz-content-sha256') or must in self.headers):
                return must + ' not signed'
        request = AWSRequest(method=self.command, url='http://%s%s' % (self.headers['Host'], self.path),
                             data=body, headers={n: self.headers[n] for n in names if n in self.headers})
        timestamp = self.headers['x-amz-date']
        if not timestamp.startswith(date):
            return 'x-amz-date is not the credential date'
        request.context['timestamp'] = timestamp
        auth = S3SigV4Auth(Credentials(self.key_id, self.secret), 's3', self.region)
        # Sign exactly the headers the client signed, as S3 does.
        def headers_to_sign(request):
            headers = HTTPHeaders()
            for name in names:
                headers[name] = request.headers[name]
            return headers
        auth.headers_to_sign = headers_to_sign
        canonical = auth.canonical_request(request)
        expected = auth.signature(auth.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, signature):
            return 'SignatureDoesNotMatch; canonical request:\n' + canonical
        return None

    def handle_any(self):
        length = int(self.headers.get('Content-Length', '0'))
        body = self.rfile.read(length) if length else b''
        try:
            why = self.check(body)
        except Exception as error:  # a request the checker cannot even read
            why = 'unreadable request: %r' % error
        if why is not None:
            self.refuse('SignatureDoesNotMatch', why)
        elif self.command == 'PUT':
            self.answer(200, [('ETag', '"%s"' % hashlib.md5(body).hexdigest())])
        elif self.command == 'DELETE':
            self.answer(204)
        elif self.command == 'HEAD':
            self.send_response(200)
            self.send_header('Content-Length', '0')
            self.end_headers()
        elif 'list-type=2' in self.path:
            self.answer(200, [('Content-Type', 'application/xml')],
                        b'<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>')
        elif 'uploads=' in self.path:
            self.answer(200, [('Content-Type', 'application/xml')],
                        b'<InitiateMultipartUploadResult><UploadId>id/+=</UploadId>'
                        b'</InitiateMultipartUploadResult>')
        else:
            self.answer(404, [('Content-Type', 'application/xml')],
                        b'<Error><Code>NoSuchKey</Code><Message>checker</Message></Error>')

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def main():
    Handler.key_id, Handler.secret, Handler.region = sys.argv[1:4]
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    print('listening on 127.0.0.1:%d' % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == '__main__':
    main()
