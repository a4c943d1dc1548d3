# The programs' terminate handler (examples/support/terminate_handler.cpp), linked as the programs
# link it (libstdc++ static), replaces libstdc++'s verbose one: an exception that escapes main is
# still named with its what(), the process still aborts, and libstdc++'s demangler is not linked in.
# Run by ctest: cmake -DPROBE=<throw_uncaught, not stripped> -P run_terminate_handler_test.cmake
cmake_minimum_required(VERSION 3.21)

execute_process(COMMAND ${PROBE} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT rc MATCHES "[Aa]bort")
  message(FATAL_ERROR "the probe should have aborted; it ended with: ${rc}\n${err}")
endif()
set(expected "terminate called after throwing an instance of 'St13runtime_error'\n  what\\(\\):  the probe's exception\n")
if(NOT err MATCHES "^${expected}$")
  message(FATAL_ERROR "the probe's stderr was not the terminate handler's two lines:\n${err}")
endif()

execute_process(COMMAND nm ${PROBE} RESULT_VARIABLE rc OUTPUT_VARIABLE symbols ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm ${PROBE} failed (${rc}): ${err}")
endif()
if(symbols MATCHES "__cxa_demangle")
  message(FATAL_ERROR "libstdc++'s demangler is linked in: the library's own terminate handler was taken")
endif()
if(NOT symbols MATCHES "__verbose_terminate_handler")
  message(FATAL_ERROR "no terminate handler in the probe: the test does not test what it says")
endif()
message(STATUS "the programs' terminate handler names the exception and aborts; no demangler linked")
