# Configuring amb where Asio or picojson cannot be found fails with a message naming the
# Debian package to install. /usr/include is hidden from find_path with CMAKE_IGNORE_PATH.
# Run by ctest: cmake -DSOURCE_DIR=.. -DWORK_DIR=.. -P run_missing_dependency_test.cmake
cmake_minimum_required(VERSION 3.21)

function(expect_configure_failure name expected)
  file(REMOVE_RECURSE ${WORK_DIR}/${name})
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/${name} -DAMB_BUILD_TESTS=OFF
                          -DAMB_BUILD_EXAMPLES=OFF -DCMAKE_IGNORE_PATH=/usr/include ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(rc EQUAL 0)
    message(FATAL_ERROR "${name}: configuring without the dependency succeeded; expected a failure")
  endif()
  # CMake wraps long messages: compare with runs of blanks and newlines folded to one space.
  string(REGEX REPLACE "[ \n]+" " " flat "${out}")
  string(FIND "${flat}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${name}: the error does not say \"${expected}\":\n${out}")
  endif()
  message(STATUS "${name}: fails with \"${expected}\"")
endfunction()

expect_configure_failure(no_asio "standalone Asio (asio.hpp) not found: install the Debian package libasio-dev")
# Asio given explicitly, so the picojson check is the one that fails.
expect_configure_failure(no_picojson "picojson (picojson.h) not found: install the Debian package picojson-dev"
                         -DAMB_ASIO_INCLUDE_DIR=/usr/include)
