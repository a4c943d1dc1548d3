// SPDX-License-Identifier: MIT
// Plain data the etcd client returns: key-values, results of KV and lease calls, watch events.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace amb {

/// One key-value as etcd stores it. Keys and values are arbitrary bytes.
struct etcd_kv {
  std::string key;                   ///< raw bytes
  std::string value;                 ///< raw bytes ("" for a DELETE event's kv)
  std::int64_t create_revision = 0;  ///< revision that created the key
  std::int64_t mod_revision = 0;     ///< revision of the last change
  std::int64_t version = 0;          ///< number of changes since creation
  std::int64_t lease = 0;            ///< attached lease id, 0 when none
  friend bool operator==(const etcd_kv&, const etcd_kv&) = default;
};

/// Result of a range read (one key or a prefix).
struct etcd_range_result {
  std::int64_t revision = 0;  ///< store revision the read saw: watch from revision + 1 to miss nothing
  std::vector<etcd_kv> kvs;   ///< matching keys in key order
  std::int64_t count = 0;     ///< number of matching keys (may exceed kvs.size() with a limit)
  bool more = false;          ///< true when a limit cut the result
};

/// Result of a put.
struct etcd_put_result {
  std::int64_t revision = 0;       ///< store revision after the put
  std::optional<etcd_kv> prev_kv;  ///< the previous key-value, when asked for and the key existed
};

/// Result of a delete (one key or a prefix).
struct etcd_delete_result {
  std::int64_t revision = 0;  ///< store revision after the delete
  std::int64_t deleted = 0;   ///< number of keys deleted
};

/// Result of create-if-absent.
struct etcd_create_result {
  std::int64_t revision = 0;        ///< store revision after the transaction
  bool created = false;             ///< true when the key did not exist and was written
  std::optional<etcd_kv> existing;  ///< the key that was already there, when not created
};

/// A granted lease.
struct etcd_lease {
  std::int64_t id = 0;   ///< lease id (63-bit, never through double)
  std::int64_t ttl = 0;  ///< granted TTL in seconds (etcd raises small values to its minimum)
};

/// Result of a lease time-to-live query.
struct etcd_lease_ttl {
  std::int64_t id = 0;            ///< the lease asked about
  std::int64_t ttl = -1;          ///< remaining seconds; -1 when the lease is gone
  std::int64_t granted_ttl = 0;   ///< the TTL it was granted with
  std::vector<std::string> keys;  ///< attached keys, when asked for
};

/// One change seen by a watch.
struct etcd_event {
  enum class kind { put, del };    ///< PUT or DELETE ("delete" is a keyword)
  kind type = kind::put;           ///< PUT (create or update) or DELETE
  etcd_kv kv;                      ///< for DELETE only key and mod_revision are set
  std::optional<etcd_kv> prev_kv;  ///< the key before the change, when the watch asked for it
  friend bool operator==(const etcd_event&, const etcd_event&) = default;
};

}  // namespace amb
