// SPDX-License-Identifier: MIT
// The three programs' terminate handler, in place of libstdc++'s verbose one.
//
// Why: libstdc++'s default handler (__gnu_cxx::__verbose_terminate_handler) demangles the type of
// the exception that escaped, and the demangler is the largest single piece of libstdc++ in the
// programs: 47 kB of code that runs only on the way to abort(). The programs link libstdc++
// statically, so it costs 49 kB of every static program (dynamic-etcd-amb: 1,540,328 -> 1,491,176
// bytes) and about as much of every program's idle memory (the kernel maps the code pages around
// each page in use; simple-amb's own pages: 400 -> 332 kB PSS). A handler defined here is the one
// the linker takes, so libstdc++'s, and the demangler with it, are never pulled from the library.
//
// It says what libstdc++'s says, with the exception type's mangled name (`c++filt -t NAME` turns it
// back), and ends with abort(), as a terminate handler must.
#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>  // declares __gnu_cxx::__verbose_terminate_handler and the current exception's type
#include <exception>
#include <typeinfo>

namespace __gnu_cxx {

void __verbose_terminate_handler() {
  static bool entered = false;  // what() itself threw and terminated: stop here
  if (entered) std::abort();
  entered = true;
  if (const std::type_info* type = abi::__cxa_current_exception_type()) {
    std::fprintf(stderr, "terminate called after throwing an instance of '%s'\n", type->name());
    try {
      throw;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  what():  %s\n", e.what());
    } catch (...) {  // not a std::exception: its type is all there is to say
    }
  } else {
    std::fputs("terminate called without an active exception\n", stderr);
  }
  std::abort();
}

}  // namespace __gnu_cxx
