// SPDX-License-Identifier: Apache-2.0
// append_loop PATH COUNT SIZE: COUNT write(2)s of SIZE bytes each on a new
// O_WRONLY|O_APPEND descriptor (a logger's), then close. Prints the seconds
// from the open to the end of the close, which in write-back mode flushes
// what the page cache holds, so the figure counts the whole cost of the
// bytes. fs_bench.py runs it: a Python loop spends about as long in the
// interpreter as in the kernel, which hides the filesystem's share.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s PATH COUNT SIZE\n", argv[0]);
    return 2;
  }
  const char* path = argv[1];
  const long count = std::strtol(argv[2], nullptr, 10);
  const long size = std::strtol(argv[3], nullptr, 10);
  if (count <= 0 || size <= 0) {
    std::fprintf(stderr, "append_loop: COUNT and SIZE must be positive\n");
    return 2;
  }
  std::string line(static_cast<size_t>(size), 'x');
  line.back() = '\n';
  const auto start = std::chrono::steady_clock::now();
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "append_loop: open %s: %s\n", path, std::strerror(errno));
    return 1;
  }
  for (long i = 0; i < count; ++i) {
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      std::fprintf(stderr, "append_loop: write %ld: %s\n", i, std::strerror(errno));
      return 1;
    }
  }
  if (::close(fd) != 0) {
    std::fprintf(stderr, "append_loop: close: %s\n", std::strerror(errno));
    return 1;
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  std::printf("%.9f\n", elapsed.count());
  return 0;
}
