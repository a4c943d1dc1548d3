// SPDX-License-Identifier: MIT
// Deadlines of equal length under one timer: the proxy's connect timeouts, without a timer per connect.
//
// Every upstream connect of a proxy has the same timeout, so the deadlines expire in the order the
// connects started: a first-in, first-out list is already sorted, adding and removing are O(1), and
// one timer, set for the oldest deadline, serves them all. A timer of its own per connect would
// cost each connection a service look-up, a handler, a cancellation and (when it is the loop's
// earliest timer) a timerfd_settime; this costs none of that. The timer is re-armed only when it
// fires, for the deadline then oldest: connects that finish in microseconds never touch it, and
// under a steady flow of them it fires about once per timeout.
//
// Threads: one-thread use only (the proxy's loop), like the proxy itself.
#pragma once

#include "amb/detail/asio.hpp"

#include <chrono>
#include <memory>
#include <system_error>

namespace amb::detail {

class deadline_queue {
public:
  using clock = std::chrono::steady_clock;

  /// One deadline, embedded in the object it guards (no allocation). Not copyable or movable
  /// while queued; its destructor takes it out of the queue.
  class entry {
  public:
    /// `on_expiry(owner)` runs on the loop's thread when the deadline passes while still queued
    /// (the entry is out of the queue by then); it must not throw.
    using expiry_callback = void (*)(void* owner) noexcept;
    entry(void* owner, expiry_callback on_expiry) noexcept : owner_(owner), on_expiry_(on_expiry) {}
    entry(const entry&) = delete;
    entry& operator=(const entry&) = delete;
    ~entry() {
      if (queue_) queue_->remove(*this);
    }
    /// True from add() until remove() or expiry.
    bool queued() const noexcept { return queue_ != nullptr; }

  private:
    friend class deadline_queue;
    void* owner_;
    expiry_callback on_expiry_;
    deadline_queue* queue_ = nullptr;
    entry* older_ = nullptr;
    entry* newer_ = nullptr;
    clock::time_point at_{};
  };

  explicit deadline_queue(asio::any_io_executor executor) : timer_(std::move(executor)) {}
  deadline_queue(const deadline_queue&) = delete;
  deadline_queue& operator=(const deadline_queue&) = delete;
  /// Entries still queued are let go without expiring (their owners may outlive the queue).
  ~deadline_queue() {
    *alive_ = false;
    while (oldest_) remove(*oldest_);
  }

  /// Queues `e` to expire at `at`, which must not be earlier than any deadline already queued (the
  /// same timeout from now always is). A queued `e` is moved to the end.
  void add(entry& e, clock::time_point at) {
    if (e.queue_) remove(e);
    e.queue_ = this;
    e.at_ = at;
    e.older_ = newest_;
    e.newer_ = nullptr;
    (newest_ ? newest_->newer_ : oldest_) = &e;
    newest_ = &e;
    if (!armed_) arm();
  }

  /// Takes `e` out of the queue (nothing when it is not queued). The timer is left as it is: when
  /// it fires it finds the new oldest deadline and waits again, or stops when the queue is empty.
  void remove(entry& e) noexcept {
    if (e.queue_ != this) return;
    (e.older_ ? e.older_->newer_ : oldest_) = e.newer_;
    (e.newer_ ? e.newer_->older_ : newest_) = e.older_;
    e.queue_ = nullptr;
    e.older_ = e.newer_ = nullptr;
  }

  /// True when nothing is queued.
  bool empty() const noexcept { return oldest_ == nullptr; }

private:
  void arm() {
    armed_ = true;
    timer_.expires_at(oldest_->at_);
    timer_.async_wait([this, alive = alive_](std::error_code ec) {
      if (!*alive) return;  // the queue is gone (its destructor cancelled this wait)
      armed_ = false;
      if (ec) return;
      expire_due();
    });
  }

  void expire_due() {
    const auto now = clock::now();
    while (oldest_ && oldest_->at_ <= now) {
      entry& e = *oldest_;
      remove(e);
      e.on_expiry_(e.owner_);
    }
    if (oldest_ && !armed_) arm();
  }

  asio::steady_timer timer_;
  bool armed_ = false;
  entry* oldest_ = nullptr;
  entry* newest_ = nullptr;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // false once the queue is destroyed
};

}  // namespace amb::detail
