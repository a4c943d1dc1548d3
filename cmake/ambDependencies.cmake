# Finds amb's dependencies (standalone Asio, picojson, threads) and wraps them in
# the INTERFACE target amb_dependencies. Used by the build and by ambConfig.cmake.
# Neither Asio nor picojson ships a CMake package on Debian, hence find_path.
if(NOT TARGET amb_dependencies)
  find_package(Threads REQUIRED)
  find_path(AMB_ASIO_INCLUDE_DIR asio.hpp)
  if(NOT AMB_ASIO_INCLUDE_DIR)
    message(FATAL_ERROR "amb: standalone Asio (asio.hpp) not found: install the Debian package libasio-dev (or run 'make setup')")
  endif()
  find_path(AMB_PICOJSON_INCLUDE_DIR picojson.h)
  if(NOT AMB_PICOJSON_INCLUDE_DIR)
    message(FATAL_ERROR "amb: picojson (picojson.h) not found: install the Debian package picojson-dev (or run 'make setup')")
  endif()
  add_library(amb_dependencies INTERFACE)
  # Paths are given at build time only; an installed amb finds them again here.
  target_include_directories(amb_dependencies SYSTEM INTERFACE
    $<BUILD_INTERFACE:${AMB_ASIO_INCLUDE_DIR}> $<BUILD_INTERFACE:${AMB_PICOJSON_INCLUDE_DIR}>)
  target_link_libraries(amb_dependencies INTERFACE Threads::Threads)
endif()
