// SPDX-License-Identifier: MIT
// Second translation unit including the single header (see first_tu.cpp).
#include <amb/amb.hpp>

#include <string>

std::string second_tu_version() {
  auto ep = amb::parse_endpoint("unix:///var/run/docker.sock");
  return ep ? std::string(amb::version) : std::string();
}
