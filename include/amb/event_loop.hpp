// SPDX-License-Identifier: MIT
// Ending an io_context in a safe order: its queued coroutine frames first, then the objects they point into.
#pragma once

#include "amb/detail/asio.hpp"

namespace amb {

namespace detail {
// execution_context::shutdown() is protected; a pointer to it, taken through a derived class, is the
// standard way to call it on a context we did not create.
struct context_access : asio::execution_context {
  static constexpr auto shutdown_fn = &context_access::shutdown;
};
}  // namespace detail

/// Destroys every handler and coroutine frame still queued in `ctx`, what its destructor does first.
/// Call it once run() has returned and before the objects those frames point into (clients, the
/// ambassador, the registrar) are destroyed: their frames may still refer to them (an etcd request
/// cut by the stop, a wait on an engine). The context itself stays valid until its own destructor,
/// so sockets and timers those objects hold are destroyed in order. Calling it twice is harmless.
inline void destroy_pending_work(asio::execution_context& ctx) noexcept {
  (ctx.*detail::context_access::shutdown_fn)();
}

}  // namespace amb
