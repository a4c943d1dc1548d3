// SPDX-License-Identifier: MIT
// Asio first, then amb: under Clang 14 Asio 1.22 has already decided against coroutines, so amb must
// stop with one line naming the macros to define (ctest: single_header.clang_asio_first_says_what_to_define).
#include <asio.hpp>

#include "amb/amb.hpp"

int main() {}
