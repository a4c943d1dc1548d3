// SPDX-License-Identifier: MIT
// The state file: written atomically and read back equal; every way a file can be wrong is one
// error line naming the file and the reason.
#include <amb/instance_state_file.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <stdlib.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace instance_state_file_test {

namespace {
/// A temporary folder, removed with its files.
struct folder {
  std::filesystem::path path;
  folder() {
    std::string t = (std::filesystem::temp_directory_path() / "amb-state-XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~folder() {
    std::error_code ignored;  // best effort
    std::filesystem::remove_all(path, ignored);
  }
  std::string file(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};
}  // namespace

TEST_CASE("a written state reads back equal, and only the file itself is left in the folder") {
  folder f;
  const std::string path = (f.path / "redis-A.json").string();
  amb::instance_state s;
  s.directory = "/services/redis-A/";
  s.revision = 9007199254740993;  // beyond a double's exact integers
  s.kvs = {{"/services/redis-A/a", R"({"host":"10.0.0.5","port":6379})"},
           {"/services/redis-A/b\nforged", "10.0.0.6:6379"}};
  REQUIRE(!amb::write_instance_state(path, s));
  auto back = amb::read_instance_state(path);
  REQUIRE_MESSAGE(back, back.error);
  CHECK(back->directory == s.directory);
  CHECK(back->revision == s.revision);
  CHECK(back->kvs == s.kvs);
  // Written again (a change): replaced whole, no temporary file left behind.
  s.kvs.erase("/services/redis-A/a");
  REQUIRE(!amb::write_instance_state(path, s));
  CHECK(amb::read_instance_state(path)->kvs == s.kvs);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(f.path)) files += e.is_regular_file() ? 1 : 0;
  CHECK(files == 1);
}

TEST_CASE("a file that cannot be written is the system's error, and the old file stays") {
  folder f;
  amb::instance_state s;
  s.directory = "/services/x/";
  CHECK(amb::write_instance_state((f.path / "missing-folder" / "x.json").string(), s) ==
        std::error_code(ENOENT, std::generic_category()));
}

TEST_CASE("missing, corrupt, foreign or hostile files: one error naming the file and what is wrong") {
  folder f;
  const std::string missing = (f.path / "none.json").string();
  CHECK(amb::read_instance_state(missing).error == "state file " + missing + ": No such file or directory");
  const auto garbage = f.file("garbage.json", "{\"amb_state\":1,");
  CHECK(amb::read_instance_state(garbage).error.rfind("state file " + garbage + ": not JSON (", 0) == 0);
  const auto foreign = f.file("foreign.json", R"({"name":"something else"})");
  CHECK(amb::read_instance_state(foreign).error == "state file " + foreign + ": not an amb state file (version 1)");
  const auto later = f.file("v2.json", R"({"amb_state":2,"directory":"/services/x/","revision":"1","kvs":{}})");
  CHECK(amb::read_instance_state(later).error == "state file " + later + ": not an amb state file (version 1)");
  const auto number =
      f.file("number.json", R"({"amb_state":1,"directory":"/services/x/","revision":"1","kvs":{"/services/x/a":7}})");
  CHECK(amb::read_instance_state(number).error ==
        "state file " + number + ": the value of \"/services/x/a\" is not a string");
  const auto revision =
      f.file("revision.json", R"({"amb_state":1,"directory":"/services/x/","revision":"-3","kvs":{}})");
  CHECK(amb::read_instance_state(revision).error == "state file " + revision + ": bad revision \"-3\"");
  const auto deep = f.file("deep.json", std::string(100000, '['));
  CHECK(amb::read_instance_state(deep).error == "state file " + deep + ": not JSON (nested deeper than 64 levels)");
  const auto big = f.file("big.json", std::string(amb::max_state_file_bytes + 1, ' '));
  CHECK(amb::read_instance_state(big).error == "state file " + big + ": larger than 16 MiB");
}

}  // namespace instance_state_file_test
