// SPDX-License-Identifier: MIT
// amb umbrella header: includes every public header, in dependency order.
#pragma once

// Basics: version, errors, logging, addresses.
#include "amb/version.hpp"
#include "amb/error.hpp"
#include "amb/log.hpp"
#include "amb/address.hpp"
#include "amb/event_loop.hpp"

// HTTP/1.1 client (etcd's gateway and the engine API both speak it).
#include "amb/http_response.hpp"
#include "amb/tls_options.hpp"
#include "amb/tls_stream.hpp"
#include "amb/http_client.hpp"

// The data path: connect, listen, relay.
#include "amb/tcp_connect.hpp"
#include "amb/tcp_listener.hpp"
#include "amb/relay.hpp"
#include "amb/proxy_protocol.hpp"

// etcd v3 over the JSON gateway.
#include "amb/etcd_error.hpp"
#include "amb/etcd_types.hpp"
#include "amb/etcd_client.hpp"
#include "amb/etcd_watch.hpp"
#include "amb/etcd_lease_keeper.hpp"

// The registry and the ambassador built on it.
#include "amb/registry_value.hpp"
#include "amb/balancer.hpp"
#include "amb/health_check.hpp"
#include "amb/metrics.hpp"
#include "amb/service_watch.hpp"
#include "amb/proxy.hpp"
#include "amb/ambassador.hpp"
#include "amb/instance_state_file.hpp"
#include "amb/etcd_follower.hpp"

// The container engine and the registrar.
#include "amb/docker_client.hpp"
#include "amb/container_state.hpp"
#include "amb/host_address.hpp"
#include "amb/registrar.hpp"
#include "amb/etcd_registrar.hpp"
