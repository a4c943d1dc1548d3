// SPDX-License-Identifier: MIT
// Fuzz target: the HTTP response push parser, fed whole and in pieces, then EOF; both must agree.
#include <amb/http_response.hpp>

#include "fuzz_support.hpp"

namespace {

struct outcome {
  amb::parse_state state;
  std::error_code error;
  std::size_t consumed;
  amb::http_response response;
};

// Feeds `parts` as a socket would: a piece is offered until used, then EOF if the message is open.
template <class Parts>
outcome run(const Parts& parts, bool head) {
  amb::http_response_parser p;
  p.head_request(head);
  p.max_header_bytes(4096);
  p.max_body_bytes(1 << 16);
  amb::parse_result r;
  std::size_t consumed = 0;
  for (std::string_view piece : parts) {
    r = p.feed(piece);
    AMB_FUZZ_CHECK(r.consumed <= piece.size());
    consumed += r.consumed;
    if (r.state != amb::parse_state::need_more) break;
    AMB_FUZZ_CHECK(r.consumed == piece.size());  // need_more means every byte was used
  }
  if (r.state == amb::parse_state::need_more) r = p.finish_eof();
  if (r.state == amb::parse_state::error) AMB_FUZZ_CHECK(r.error);
  return {r.state, r.error, consumed, p.release()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = amb::fuzz::text(data, size);
  for (bool head : {false, true}) {
    std::string_view whole[] = {in};
    auto a = run(whole, head);
    auto b = run(amb::fuzz::splits(in), head);
    AMB_FUZZ_CHECK(a.state == b.state);
    AMB_FUZZ_CHECK(a.error == b.error);
    if (a.state == amb::parse_state::done) {
      AMB_FUZZ_CHECK(a.consumed == b.consumed);
      AMB_FUZZ_CHECK(a.response.status == b.response.status);
      AMB_FUZZ_CHECK(a.response.body == b.response.body);
      AMB_FUZZ_CHECK(a.response.headers.size() == b.response.headers.size());
      AMB_FUZZ_CHECK(a.response.trailers.size() == b.response.trailers.size());
      AMB_FUZZ_CHECK(a.response.status >= 100 && a.response.status <= 999);
    }
  }
  return 0;
}
