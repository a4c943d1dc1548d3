// The test harness itself: real etcd and redis start on free ports and stop by PID.
#include "support/etcd_server.hpp"
#include "support/redis_server.hpp"

#include <doctest/doctest.h>

TEST_CASE("etcd starts, answers etcdctl, and is gone after kill9") {
  amb::test::etcd_cluster etcd;
  etcd.etcdctl({"put", "/amb/harness", "ok"});
  CHECK(etcd.etcdctl({"get", "--print-value-only", "/amb/harness"}) == "ok\n");
  etcd.kill9();
  CHECK(!amb::test::port_open(etcd.client_port()));
  etcd.restart();
  CHECK(etcd.etcdctl({"get", "--print-value-only", "/amb/harness"}) == "ok\n");
}

TEST_CASE("redis starts and answers PING") {
  amb::test::redis_server redis;
  auto r = amb::test::redis_cli(redis.port(), {"PING"});
  CHECK(r.status == 0);
  CHECK(r.output == "PONG\n");
}
