// SPDX-License-Identifier: MIT
// The PROXY protocol header (haproxy's specification, versions 1 and 2): the first bytes a proxy sends
// on an upstream connection to tell the server who the client is, since the connection it sees comes
// from the proxy.
#pragma once

#include "amb/log.hpp"
#include "amb/parsed.hpp"

#include "amb/detail/asio.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace amb {

/// Whether and how the proxy announces each client to the instance it connects to.
enum class proxy_protocol {
  none,  ///< nothing: the instance sees the ambassador's address (the default)
  v1,    ///< one text line, "PROXY TCP4 SRC DST SPORT DPORT\r\n"
  v2,    ///< the binary form: a 16-byte head and the addresses (12 bytes for IPv4, 36 for IPv6)
};

/// Parses "v1" or "v2" (a flag's value).
inline parsed<proxy_protocol> parse_proxy_protocol(std::string_view text) {
  parsed<proxy_protocol> r;
  if (text == "v1")
    r.value = proxy_protocol::v1;
  else if (text == "v2")
    r.value = proxy_protocol::v2;
  else
    r.error = "bad PROXY protocol version " + log::quoted(text) + " (use v1 or v2)";
  return r;
}

namespace detail {
// Both addresses of a header share one family. An IPv4-mapped IPv6 address (a client of a dual-stack
// listener) is given as IPv4 when the other one is IPv4 or mapped too, so servers log "10.0.0.7";
// otherwise an IPv4 address is given in its mapped IPv6 form.
inline void same_family(asio::ip::address& a, asio::ip::address& b) {
  auto unmapped = [](const asio::ip::address& x) {
    return x.is_v6() && x.to_v6().is_v4_mapped()
               ? asio::ip::address(asio::ip::make_address_v4(asio::ip::v4_mapped, x.to_v6()))
               : x;
  };
  a = unmapped(a);
  b = unmapped(b);
  if (a.is_v4() != b.is_v4()) {
    if (a.is_v4()) a = asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4());
    if (b.is_v4()) b = asio::ip::make_address_v6(asio::ip::v4_mapped, b.to_v4());
  }
}

inline void append_u16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}
}  // namespace detail

/// The header announcing a TCP connection from `client` to `local` (the address the client connected
/// to, i.e. the ambassador's listener), in `version`; "" for proxy_protocol::none.
inline std::string proxy_protocol_header(proxy_protocol version, const asio::ip::tcp::endpoint& client,
                                         const asio::ip::tcp::endpoint& local) {
  if (version == proxy_protocol::none) return {};
  auto src = client.address();
  auto dst = local.address();
  detail::same_family(src, dst);
  if (version == proxy_protocol::v1) {
    return std::string("PROXY ") + (src.is_v4() ? "TCP4 " : "TCP6 ") + src.to_string() + " " + dst.to_string() + " " +
           std::to_string(client.port()) + " " + std::to_string(local.port()) + "\r\n";
  }
  // v2: the 12-byte signature, version 2 + PROXY command, TCP over IPv4 (0x11) or IPv6 (0x21), the
  // length of what follows, then source and destination addresses and ports, all in network order.
  static constexpr char signature[] = "\r\n\r\n\0\r\nQUIT\n";
  std::string out(signature, sizeof signature - 1);
  out.push_back('\x21');
  out.push_back(src.is_v4() ? '\x11' : '\x21');
  detail::append_u16(out, src.is_v4() ? 12 : 36);
  auto append_address = [&out](const asio::ip::address& a) {
    if (a.is_v4()) {
      const auto bytes = a.to_v4().to_bytes();
      out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    } else {
      const auto bytes = a.to_v6().to_bytes();
      out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
  };
  append_address(src);
  append_address(dst);
  detail::append_u16(out, client.port());
  detail::append_u16(out, local.port());
  return out;
}

}  // namespace amb
