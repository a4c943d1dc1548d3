// SPDX-License-Identifier: MIT
// Fuzz target: link_address over an environment made of the input's lines (first line: the alias).
#include <amb/app/docker_links.hpp>

#include <string>
#include <vector>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = amb::fuzz::text(data, size);
  std::vector<std::string> env;
  std::size_t pos = 0;
  while (pos <= in.size()) {
    auto nl = in.find('\n', pos);
    if (nl == std::string_view::npos) nl = in.size();
    env.emplace_back(in.substr(pos, nl - pos));
    pos = nl + 1;
  }
  std::string alias = env.front();
  env.erase(env.begin());
  for (std::string a : {alias, std::string("etcd")}) {
    auto hp = amb::link_address(a, env);
    AMB_FUZZ_CHECK(hp || !hp.error.empty());
    if (hp && *hp) {
      AMB_FUZZ_CHECK((*hp)->port >= 1);
      AMB_FUZZ_CHECK(!(*hp)->host.empty());
    }
  }
  return 0;
}
