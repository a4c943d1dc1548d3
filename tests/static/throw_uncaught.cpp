// SPDX-License-Identifier: MIT
// Lets an exception escape main, so that the programs' terminate handler
// (examples/support/terminate_handler.cpp) runs: tests/static/run_terminate_handler_test.cmake.
#include <stdexcept>

int main() { throw std::runtime_error("the probe's exception"); }
