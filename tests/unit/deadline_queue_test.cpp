// SPDX-License-Identifier: MIT
// The proxy's connect deadlines: one timer for a first-in, first-out list of equal timeouts.
#include <amb/detail/deadline_queue.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace deadline_queue_test {

using namespace std::chrono_literals;
using amb::detail::deadline_queue;

namespace {
/// A guarded object: records its name in `expired` when its deadline passes.
struct guarded {
  guarded(std::string n, std::vector<std::string>& log) : name(std::move(n)), expired(log) {}
  std::string name;
  std::vector<std::string>& expired;
  deadline_queue::entry deadline{this, &on_expiry};
  static void on_expiry(void* self) noexcept {
    auto& g = *static_cast<guarded*>(self);
    g.expired.push_back(g.name);
  }
};
}  // namespace

TEST_CASE("deadlines expire oldest first, each once, and a removed one never") {
  asio::io_context io;
  deadline_queue queue(io.get_executor());
  std::vector<std::string> expired;
  guarded a("a", expired), b("b", expired), c("c", expired), d("d", expired);
  const auto now = deadline_queue::clock::now();
  queue.add(a.deadline, now + 30ms);
  queue.add(b.deadline, now + 60ms);
  queue.add(c.deadline, now + 90ms);
  queue.add(d.deadline, now + 10s);
  CHECK(b.deadline.queued());
  queue.remove(b.deadline);
  CHECK_FALSE(b.deadline.queued());
  io.run_for(300ms);
  CHECK(expired == std::vector<std::string>{"a", "c"});
  CHECK_FALSE(a.deadline.queued());
  CHECK(d.deadline.queued());  // not due yet
  queue.remove(d.deadline);
  CHECK(queue.empty());
}

TEST_CASE("the timer waits again for deadlines added after it fired, and after its queue ran empty") {
  asio::io_context io;
  deadline_queue queue(io.get_executor());
  std::vector<std::string> expired;
  guarded a("a", expired), b("b", expired);
  queue.add(a.deadline, deadline_queue::clock::now() + 20ms);
  io.run_for(100ms);
  REQUIRE(expired == std::vector<std::string>{"a"});
  io.restart();
  queue.add(b.deadline, deadline_queue::clock::now() + 20ms);
  const auto started = deadline_queue::clock::now();
  io.run_for(300ms);
  CHECK(expired == std::vector<std::string>{"a", "b"});
  CHECK(deadline_queue::clock::now() - started >= 20ms);
}

TEST_CASE("an entry destroyed while queued leaves the queue; a queue destroyed first lets its entries go") {
  asio::io_context io;
  std::vector<std::string> expired;
  {
    deadline_queue queue(io.get_executor());
    {
      guarded gone("gone", expired);
      queue.add(gone.deadline, deadline_queue::clock::now() + 20ms);
    }
    CHECK(queue.empty());
    io.run_for(100ms);
    CHECK(expired.empty());
  }
  io.restart();
  auto survivor = std::make_unique<guarded>("survivor", expired);
  {
    deadline_queue queue(io.get_executor());
    queue.add(survivor->deadline, deadline_queue::clock::now() + 20ms);
  }
  CHECK_FALSE(survivor->deadline.queued());
  io.run_for(100ms);  // the destroyed queue's cancelled wait runs and touches nothing
  CHECK(expired.empty());
  survivor.reset();  // and the entry's destructor does not reach for the queue
}

}  // namespace deadline_queue_test
