# Builds amb the three ways a user takes it, each from a clean folder:
#  1. installed, then found by a separate project with find_package(amb), as the README says;
#  2. through add_subdirectory (amb's tests and programs stay off there);
#  3. the README's single-header snippet, compiled as it stands in the README.
# Run by ctest: cmake -DSOURCE_DIR=.. -DWORK_DIR=.. -DCXX=.. -P run_consumer_tests.cmake
cmake_minimum_required(VERSION 3.21)

function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "consumer test step failed (${rc}): ${cmd}\n${out}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

# 1. install + find_package, with the README's commands and project as they stand (its "cmake-route"
#    block): `amb` is a copy of amb's sources, `my_project` the README's CMakeLists.txt with
#    consumer.cpp as main.cpp, and $HOME/.local a folder of this test.
file(READ ${SOURCE_DIR}/README.md readme)
string(REGEX MATCH "<!-- cmake-route[^>]*-->[^`]*```sh\n([^`]*)```[^`]*```cmake\n([^`]*)```[^<]*<!-- /cmake-route -->" found "${readme}")
if(NOT found)
  message(FATAL_ERROR "README.md has no <!-- cmake-route --> block with a sh and a cmake code block")
endif()
set(commands "${CMAKE_MATCH_1}")
set(project_cmake "${CMAKE_MATCH_2}")
foreach(part CMakeLists.txt cmake include single_include LICENSE)
  file(COPY ${SOURCE_DIR}/${part} DESTINATION ${WORK_DIR}/amb)
endforeach()
file(WRITE ${WORK_DIR}/my_project/CMakeLists.txt "${project_cmake}")
file(COPY_FILE ${SOURCE_DIR}/tests/consumer/consumer.cpp ${WORK_DIR}/my_project/main.cpp)
file(MAKE_DIRECTORY ${WORK_DIR}/home)
string(REGEX REPLACE "\n$" "" commands "${commands}")
string(REPLACE "\n" ";" lines "${commands}")
foreach(line IN LISTS lines)
  step(${CMAKE_COMMAND} -E env HOME=${WORK_DIR}/home CXX=${CXX} sh -ec "cd '${WORK_DIR}' && ${line}")
endforeach()
step(${WORK_DIR}/my_project/build/my_program)

# 2. add_subdirectory
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer/add_subdirectory -B ${WORK_DIR}/add_subdirectory
     -DAMB_SOURCE_DIR=${SOURCE_DIR})
step(${CMAKE_COMMAND} --build ${WORK_DIR}/add_subdirectory)
step(${WORK_DIR}/add_subdirectory/consumer)

# 3. the README's single-header snippet
string(REGEX MATCH "<!-- single-header-snippet -->[^`]*```cpp\n(.*)\n```[^<]*<!-- /single-header-snippet -->" found "${readme}")
if(NOT found)
  message(FATAL_ERROR "README.md has no <!-- single-header-snippet --> block")
endif()
set(snippet "${CMAKE_MATCH_1}")
# ...with the README's own command (g++ replaced by the compiler under test), in a folder laid out as it
# assumes: single_include/ beside main.cpp.
string(REGEX MATCH "<!-- /single-header-snippet -->[ \n]*```sh\ng\\+\\+ ([^\n]*)\n```" found_command "${readme}")
if(NOT found_command)
  message(FATAL_ERROR "README.md has no `g++ ...` command block after the single-header snippet")
endif()
separate_arguments(snippet_args UNIX_COMMAND "${CMAKE_MATCH_1}")
file(MAKE_DIRECTORY ${WORK_DIR}/snippet)
file(COPY ${SOURCE_DIR}/single_include DESTINATION ${WORK_DIR}/snippet)
file(WRITE ${WORK_DIR}/snippet/main.cpp "${snippet}\n")
step(${CMAKE_COMMAND} -E chdir ${WORK_DIR}/snippet ${CXX} ${snippet_args} -o readme_snippet)
step(${WORK_DIR}/snippet/readme_snippet)
message(STATUS "find_package, add_subdirectory and the README snippet all built and ran")
