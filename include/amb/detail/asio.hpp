// SPDX-License-Identifier: MIT
// The one place amb includes standalone Asio: turns on its C++20 coroutine support where Asio 1.22
// does not detect it by itself (Clang), so amb's headers work on GCC and Clang as they are.
#pragma once

// Asio 1.22 enables co_await under Clang only for the old Coroutines TS (<experimental/coroutine>),
// which Clang 14 with libstdc++ does not have; C++20's own coroutines work, once Asio is told.
// The macros must be set before Asio's first header: if Asio came first without them, say so.
#if defined(__clang__) && defined(__cpp_impl_coroutine) && !defined(ASIO_HAS_CO_AWAIT)
#if defined(ASIO_VERSION)
#error \
    "amb: Asio was included before amb without coroutine support; include amb first, or define ASIO_HAS_CO_AWAIT=1 and ASIO_HAS_STD_COROUTINE=1 (e.g. -DASIO_HAS_CO_AWAIT=1 -DASIO_HAS_STD_COROUTINE=1)"
#endif
#define ASIO_HAS_CO_AWAIT 1
#define ASIO_HAS_STD_COROUTINE 1
#endif

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#if !defined(ASIO_HAS_CO_AWAIT)
#error "amb: needs Asio's C++20 coroutines (asio::awaitable): compile with -std=c++20 (GCC >= 11, Clang >= 14)"
#endif
