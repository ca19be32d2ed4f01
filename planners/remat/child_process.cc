// RunStreaming (child_process.h): fork, a pipe of length-prefixed double vectors, poll until
// the deadline, SIGKILL.
#include "planners/remat/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace vramsim {
namespace remat_internal {

Streamed RunStreaming(Clock::time_point end, bool quiet,
                      const std::function<void(const Send&)>& work) {
  Streamed out;
  int fds[2];
  auto inline_run = [&] {
    work([&](const std::vector<double>& m) { out.messages.push_back(m); });
    out.finished = true;
    return out;
  };
  if (pipe(fds) != 0) return inline_run();
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return inline_run();
  }
  if (pid == 0) {
    close(fds[0]);
    if (quiet) {  // solver output must not mix with the caller's (JSON on stdout, one line
                  // on stderr): a failed assertion inside CBC is reported by the parent instead
      int null_fd = open("/dev/null", O_WRONLY);
      if (null_fd >= 0) {
        dup2(null_fd, 1);
        dup2(null_fd, 2);
        close(null_fd);
      }
    }
    auto write_all = [&](const void* data, size_t bytes) {
      const char* p = static_cast<const char*>(data);
      while (bytes > 0) {
        ssize_t w = write(fds[1], p, bytes);
        if (w <= 0) _exit(1);
        p += w;
        bytes -= static_cast<size_t>(w);
      }
    };
    work([&](const std::vector<double>& m) {
      uint64_t count = m.size();
      write_all(&count, sizeof count);
      write_all(m.data(), m.size() * sizeof(double));
    });
    close(fds[1]);
    std::fflush(stdout);
    _exit(0);
  }
  close(fds[1]);
  std::string buffer;
  size_t parsed = 0;
  auto parse = [&] {
    while (buffer.size() - parsed >= sizeof(uint64_t)) {
      uint64_t count = 0;
      std::memcpy(&count, buffer.data() + parsed, sizeof count);
      if (buffer.size() - parsed - sizeof count < count * sizeof(double)) break;
      std::vector<double> m(count);
      std::memcpy(m.data(), buffer.data() + parsed + sizeof count, count * sizeof(double));
      out.messages.push_back(std::move(m));
      parsed += sizeof count + count * sizeof(double);
    }
  };
  bool eof = false, killed = false;
  std::vector<char> chunk(1 << 16);
  while (!eof) {
    double left = SecondsLeft(end);
    if (left <= 0) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    int r = poll(&pfd, 1, static_cast<int>(std::min(left * 1000, 1000.0)) + 1);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    ssize_t got = read(fds[0], chunk.data(), chunk.size());
    if (got <= 0) {
      eof = true;
    } else {
      buffer.append(chunk.data(), static_cast<size_t>(got));
      parse();
    }
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  out.finished = !killed && eof && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  out.crashed = !killed && !out.finished;
  return out;
}

}  // namespace remat_internal
}  // namespace vramsim
