// SPDX-License-Identifier: MIT
// Active health checks (haproxy's "check" with rise/fall): every instance is connected to on a timer,
// optionally sent a request and its answer compared, and taken out of service after `fall` failures
// in a row, back after `rise` successes. Open connections are never touched by a check.
#pragma once

#include "amb/address.hpp"
#include "amb/detail/async.hpp"
#include "amb/log.hpp"
#include "amb/parsed.hpp"
#include "amb/tcp_connect.hpp"

#include "amb/detail/asio.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace amb {

/// How instances are checked.
struct health_check_options {
  std::chrono::milliseconds interval{2000};  ///< between two checks of one instance (each spread by +-10 %)
  std::chrono::milliseconds timeout{1000};   ///< for the whole check: connect, send, and the expected answer
  std::uint32_t rise = 2;                    ///< successes in a row that bring a failing instance back
  std::uint32_t fall = 3;                    ///< failures in a row that take an instance out of service
  std::string send{};                        ///< bytes written once connected ("" = connect only)
  std::string expect{};                      ///< bytes the answer must contain ("" = none awaited)
};

/// Longest --check-send / --check-expect text, once escapes are decoded.
inline constexpr std::size_t max_check_bytes = 4096;

/// Decodes a check string as given on a command line: `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH` stand
/// for their bytes ("PING\r\n"); any other backslash sequence is an error, and so is a result longer
/// than max_check_bytes.
inline parsed<std::string> parse_check_bytes(std::string_view text) {
  parsed<std::string> r;
  std::string out;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out.push_back(text[i]);
      continue;
    }
    const char e = i + 1 < text.size() ? text[i + 1] : '\0';
    if (e == 'r' || e == 'n' || e == 't' || e == '0' || e == '\\') {
      out.push_back(e == 'r' ? '\r' : e == 'n' ? '\n' : e == 't' ? '\t' : e == '0' ? '\0' : '\\');
      ++i;
    } else if (e == 'x' && i + 3 < text.size() && hex(text[i + 2]) >= 0 && hex(text[i + 3]) >= 0) {
      out.push_back(static_cast<char>(hex(text[i + 2]) * 16 + hex(text[i + 3])));
      i += 3;
    } else {
      r.error = "bad escape " + log::quoted(text.substr(i, e == 'x' ? 4 : 2)) + " in " + log::quoted(text) +
                " (use \\r, \\n, \\t, \\0, \\\\ or \\xHH)";
      return r;
    }
    if (out.size() > max_check_bytes) break;
  }
  if (out.size() > max_check_bytes) {
    r.error = "check string " + log::quoted(text) + " longer than " + std::to_string(max_check_bytes) + " bytes";
    return r;
  }
  r.value = std::move(out);
  return r;
}

/// One instance's standing under haproxy's rise/fall rule. It starts in service (as haproxy's servers
/// do), so an instance that was just registered gets connections before its first check.
struct check_state {
  bool up = true;              ///< in service
  std::uint32_t streak = 0;    ///< results in a row that disagree with `up` (toward a change)
  std::string last_failure{};  ///< why the last failed check failed

  /// Counts one result; true when it changed `up`.
  bool record(bool passed, std::uint32_t rise, std::uint32_t fall) {
    if (passed == up) {
      streak = 0;
      return false;
    }
    if (++streak < (up ? std::max<std::uint32_t>(fall, 1) : std::max<std::uint32_t>(rise, 1))) return false;
    up = passed;
    streak = 0;
    return true;
  }
};

/// One check of `target`: "" when it passed, else why not ("connect: Connection refused", "timed out
/// after 1s", "answered \"-ERR\" (expected \"+PONG\")"). Never throws for network errors.
// Arguments by value: a check in flight keeps what it needs, whatever happens to its caller.
inline asio::awaitable<std::string> check_once(asio::any_io_executor ex, host_port target, health_check_options o) {
  const auto deadline = std::chrono::steady_clock::now() + o.timeout;
  asio::ip::tcp::socket socket(ex);
  if (auto ec = co_await connect_tcp(socket, target, o.timeout))
    co_return ec == make_error_code(errc::timeout) ? "timed out after " + log::duration(o.timeout) + " (connect)"
                                                   : "connect: " + ec.message();
  if (o.send.empty() && o.expect.empty()) co_return std::string();
  // The rest within what is left of the timeout: a target that accepts and then stalls fails here.
  auto alive = std::make_shared<bool>(true);
  bool timed_out = false;
  asio::steady_timer timer(ex);
  detail::arm_deadline(timer, deadline, alive, [&] {
    timed_out = true;
    std::error_code ignored;  // the pending operation ends with operation_aborted
    socket.close(ignored);
  });
  auto timed_out_text = [&](const std::string& answer) {
    return "timed out after " + log::duration(o.timeout) +
           (o.expect.empty() ? " (sending)"
            : answer.empty() ? " (no answer)"
                             : " (answered " + log::quoted(answer) + ")");
  };
  std::string failure;
  std::string answer;
  if (!o.send.empty()) {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(o.send), detail::use_nothrow_awaitable);
    if (ec) failure = timed_out ? timed_out_text(answer) : "send: " + ec.message();
  }
  while (failure.empty() && !o.expect.empty() && answer.find(o.expect) == std::string::npos) {
    if (answer.size() >= max_check_bytes + o.expect.size()) {  // enough read: it is not coming
      failure = "answered " + log::quoted(answer) + " (expected " + log::quoted(o.expect) + ")";
      break;
    }
    char buf[1024];
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), detail::use_nothrow_awaitable);
    answer.append(buf, n);
    if (!ec || answer.find(o.expect) != std::string::npos) continue;
    failure = timed_out        ? timed_out_text(answer)
              : answer.empty() ? "closed without an answer (expected " + log::quoted(o.expect) + ")"
                               : "answered " + log::quoted(answer) + " (expected " + log::quoted(o.expect) + ")";
  }
  *alive = false;
  timer.cancel();
  std::error_code ignored;  // the check is over either way
  socket.close(ignored);
  co_return failure;
}

/// Checks a set of instances, each on its own timer, on one executor (the ambassador's loop 0): once per
/// ambassador however many loops it has. `on_change(id, up)` runs on that executor when an instance goes
/// out of service or comes back, after the line saying so. Call every member on that executor.
class health_checker {
public:
  /// What the checker knows of one instance.
  struct instance_health {
    std::string id;     ///< the instance's key
    host_port address;  ///< where it is checked
    bool up = true;     ///< in service
  };

  health_checker(asio::any_io_executor ex, health_check_options o,
                 std::function<void(const std::string&, bool)> on_change, std::uint64_t seed = 0x5eed)
      : ex_(std::move(ex)), opts_(std::move(o)), on_change_(std::move(on_change)), rng_(seed) {}
  health_checker(const health_checker&) = delete;
  health_checker& operator=(const health_checker&) = delete;
  ~health_checker() { stop(); }

  /// Makes the checked set equal to `instances` (id, address): a new id, or an id whose address
  /// changed, starts in service and is first checked within one interval (at a random point of it,
  /// so 1000 instances do not all connect at once); an id no longer given stops being checked.
  void set_instances(const std::vector<std::pair<std::string, host_port>>& instances) {
    std::map<std::string, std::shared_ptr<prober>> next;
    for (const auto& [id, address] : instances) {
      auto it = probers_.find(id);
      if (it != probers_.end() && it->second->address == address) {
        next.emplace(id, it->second);
        probers_.erase(it);
        continue;
      }
      auto p = std::make_shared<prober>(ex_);
      p->id = id;
      p->address = address;
      next.emplace(id, p);
      const auto first = std::chrono::milliseconds(
          std::uniform_int_distribution<std::int64_t>(0, std::max<std::int64_t>(opts_.interval.count() - 1, 0))(rng_));
      asio::co_spawn(ex_, run(p, first), [](std::exception_ptr e) {
        if (e) log::error("internal: a health check loop stopped");
      });
    }
    for (auto& [id, p] : probers_) p->stop();
    probers_ = std::move(next);
  }

  /// Stops every check (pending checks end within their timeout and report nothing).
  void stop() {
    for (auto& [id, p] : probers_) p->stop();
    probers_.clear();
  }

  /// Every checked instance and whether it is in service, by id.
  std::vector<instance_health> instances() const {
    std::vector<instance_health> out;
    for (const auto& [id, p] : probers_) out.push_back({id, p->address, p->state.up});
    return out;
  }

  /// The options in force.
  const health_check_options& options() const noexcept { return opts_; }

private:
  struct prober {
    explicit prober(asio::any_io_executor ex) : timer(std::move(ex)) {}
    std::string id;
    host_port address;
    check_state state;
    bool stopped = false;
    asio::steady_timer timer;
    void stop() {
      stopped = true;
      timer.cancel();
    }
  };

  asio::awaitable<void> run(std::shared_ptr<prober> p, std::chrono::milliseconds first) {
    auto wait = first;
    while (!p->stopped) {
      p->timer.expires_after(wait);
      co_await p->timer.async_wait(detail::use_nothrow_awaitable);
      if (p->stopped) co_return;
      const std::string failure = co_await check_once(ex_, p->address, opts_);  // copies: see check_once
      if (p->stopped) co_return;  // removed while it was checked: the result is about nothing
      if (!failure.empty()) p->state.last_failure = failure;
      if (p->state.record(failure.empty(), opts_.rise, opts_.fall)) {
        if (p->state.up)
          log::info("instance ", log::escaped(p->id), " at ", log::escaped(p->address.to_string()), " passed ",
                    log::count(std::max<std::uint32_t>(opts_.rise, 1), "health check"), " in a row: back in service");
        else
          log::warn("instance ", log::escaped(p->id), " at ", log::escaped(p->address.to_string()), " failed ",
                    log::count(std::max<std::uint32_t>(opts_.fall, 1), "health check"),
                    " in a row (last: ", p->state.last_failure, "): no new connections until it passes ",
                    std::max<std::uint32_t>(opts_.rise, 1));
        if (on_change_) on_change_(p->id, p->state.up);
      }
      // +-10 %: instances checked together drift apart instead of connecting in step forever.
      const auto span = opts_.interval.count() / 10;
      wait = opts_.interval +
             std::chrono::milliseconds(span > 0 ? std::uniform_int_distribution<std::int64_t>(-span, span)(rng_) : 0);
    }
  }

  asio::any_io_executor ex_;
  health_check_options opts_;
  std::function<void(const std::string&, bool)> on_change_;
  std::mt19937_64 rng_;
  std::map<std::string, std::shared_ptr<prober>> probers_;
};

}  // namespace amb
