// SPDX-License-Identifier: MIT
// Unit tests for include/amb/http_response.hpp: every case fed whole, split at every byte offset,
// and one byte at a time (Beast's "parsegrind"), in gathering and in streaming mode.
#include <amb/http_response.hpp>

#include <doctest/doctest.h>

#include <functional>
#include <sstream>
#include <string>
#include <vector>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace http_response_test {

using amb::errc;
using amb::http_response_parser;
using amb::parse_state;

namespace {

/// Everything a run of the parser produced, comparable across runs.
struct outcome {
  parse_state state = parse_state::need_more;
  std::error_code error;
  std::size_t consumed = 0;  // bytes of the input that belonged to the response
  int status = 0;
  std::string reason;
  std::string headers;   // "name=value;" ...
  std::string trailers;  // "name=value;" ...
  std::string body;
  bool keep_alive = false;
  bool operator==(const outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
  return os << "{state " << static_cast<int>(o.state) << ", error '" << o.error.message() << "', consumed "
            << o.consumed << ", status " << o.status << ", headers " << o.headers << ", trailers " << o.trailers
            << ", body '" << o.body << "', keep_alive " << o.keep_alive << "}";
}

using setup_fn = std::function<void(http_response_parser&)>;

/// Feeds `pieces` in order (each piece possibly in several feed() calls), then EOF when asked.
outcome run(const std::vector<std::string>& pieces, const setup_fn& setup, bool eof, bool streaming) {
  http_response_parser p;
  if (setup) setup(p);
  std::string streamed;
  if (streaming) p.on_body([&](std::string_view s) { streamed.append(s); });
  outcome o;
  bool finished = false;
  for (auto& piece : pieces) {
    std::string_view rest = piece;
    while (!finished) {
      auto r = p.feed(rest);
      o.consumed += r.consumed;
      rest.remove_prefix(r.consumed);
      o.state = r.state;
      o.error = r.error;
      if (r.state == parse_state::done || r.state == parse_state::error)
        finished = true;
      else if (r.state == parse_state::need_more) {
        REQUIRE(rest.empty());  // need_more means everything was used
        break;
      }
      // head_done: carry on feeding the rest of this piece
    }
    if (finished) break;
  }
  if (!finished && eof) {
    auto r = p.finish_eof();
    o.state = r.state;
    o.error = r.error;
  }
  const auto& res = p.response();
  o.status = res.status;
  o.reason = res.reason;
  for (auto& h : res.headers) o.headers += h.name + "=" + h.value + ";";
  for (auto& h : res.trailers) o.trailers += h.name + "=" + h.value + ";";
  o.body = streaming ? streamed : res.body;
  if (streaming) CHECK(res.body.empty());
  o.keep_alive = p.keep_alive();
  // Where in the input an error is noticed depends on the split (a too-long line is refused as soon as
  // it is too long); what is gathered before a body limit trips, too. The error itself must not.
  if (o.state == parse_state::error) o.consumed = 0;
  if (o.error == errc::body_too_large) o.body.clear();
  return o;
}

/// Runs the message whole, split at every offset and byte by byte, gathering and streaming, with and
/// without pause_after_head; every run must give the same outcome, which is returned.
outcome grind(const std::string& input, setup_fn setup = {}, bool eof = false, bool streaming_too = true) {
  const outcome whole = run({input}, setup, eof, false);
  for (int mode = 0; mode < 4; ++mode) {
    const bool streaming = mode & 1;
    setup_fn s = setup;
    if (mode & 2)
      s = [setup](http_response_parser& p) {
        if (setup) setup(p);
        p.pause_after_head(true);
      };
    CAPTURE(mode);
    auto expect = whole;
    // body_too_large is a gathering-mode limit: the streaming runs may legitimately go further.
    if (streaming && (!streaming_too || whole.error == errc::body_too_large)) continue;
    CHECK(run({input}, s, eof, streaming) == expect);
    for (std::size_t i = 0; i <= input.size(); ++i) {
      CAPTURE(i);
      auto got = run({input.substr(0, i), input.substr(i)}, s, eof, streaming);
      if (!(got == expect)) {
        CHECK(got == expect);
        break;  // one report per mode is enough
      }
    }
    std::vector<std::string> bytes;
    for (char c : input) bytes.emplace_back(1, c);
    CHECK(run(bytes, s, eof, streaming) == expect);
  }
  return whole;
}

outcome grind_eof(const std::string& input, setup_fn setup = {}) { return grind(input, std::move(setup), true); }

// docs/protocols.md §1.2: an etcd error reply, chunked, with a trailer.
const std::string etcd_error_body =
    "{\"error\":\"etcdserver: mvcc: required revision has been compacted\",\"message\":\"etcdserver: mvcc: required "
    "revision has been compacted\",\"code\":11}";
const std::string etcd_error_reply =
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: application/json\r\n"
    "Trailer: Grpc-Trailer-Content-Type\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "8f\r\n" +
    etcd_error_body + "\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n";

}  // namespace

TEST_CASE("Content-Length body, headers looked up case-insensitively") {
  const std::string msg =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nGrpc-Metadata-Content-Type: application/grpc\r\n"
      "Content-Length: 13\r\n\r\n{\"etcd\":\"ok\"}";
  auto o = grind(msg);
  CHECK(o.state == parse_state::done);
  CHECK(o.consumed == msg.size());
  CHECK(o.status == 200);
  CHECK(o.reason == "OK");
  CHECK(o.body == "{\"etcd\":\"ok\"}");
  CHECK(o.keep_alive);

  http_response_parser p;
  REQUIRE(p.feed(msg).state == parse_state::done);
  CHECK(p.response().header("content-type") == "application/json");
  CHECK(p.response().header("CONTENT-LENGTH") == "13");
  CHECK(p.response().has_header("grpc-metadata-content-type"));
  CHECK_FALSE(p.response().has_header("Transfer-Encoding"));
  CHECK(p.response().header("Transfer-Encoding").empty());
}

TEST_CASE("header values are trimmed; an empty value is allowed; a missing reason is tolerated") {
  auto o = grind("HTTP/1.1 200\r\nX-A:   spaced\t \r\nX-Empty:\r\nContent-Length: 0\r\n\r\n");
  CHECK(o.state == parse_state::done);
  CHECK(o.status == 200);
  CHECK(o.reason.empty());
  CHECK(o.headers == "X-A=spaced;X-Empty=;Content-Length=0;");
}

TEST_CASE("bare LF line endings are accepted") {
  auto o = grind("HTTP/1.1 200 OK\nContent-Length: 2\n\nhi");
  CHECK(o.state == parse_state::done);
  CHECK(o.body == "hi");
}

TEST_CASE("etcd's chunked error reply with a trailer (docs/protocols.md §1.2)") {
  REQUIRE(etcd_error_body.size() == 0x8f);
  auto o = grind(etcd_error_reply);
  CHECK(o.state == parse_state::done);
  CHECK(o.error == std::error_code{});
  CHECK(o.consumed == etcd_error_reply.size());
  CHECK(o.status == 400);
  CHECK(o.reason == "Bad Request");
  CHECK(o.body == etcd_error_body);
  CHECK(o.trailers == "Grpc-Trailer-Content-Type=application/grpc;");
  CHECK(o.keep_alive);
}

TEST_CASE("chunk extensions, upper-case hex, several chunks and trailers") {
  auto o = grind(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=value;other\r\nhello\r\nB ; ext\r\n, the world\r\n000\r\nA: 1\r\nb:  2 \r\n\r\n");
  CHECK(o.state == parse_state::done);
  CHECK(o.body == "hello, the world");
  CHECK(o.trailers == "A=1;b=2;");
}

TEST_CASE("etcd's final chunk on SIGTERM (docs/protocols.md §1.6): body without a trailing newline, then EOF") {
  const std::string last =
      "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"transport is closing\",\"http_status\":\"Service "
      "Unavailable\"}}";
  REQUIRE(last.size() == 0x6f);
  const std::string stream =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
      "6f\r\n" +
      last + "\r\n0\r\n\r\n";
  auto o = grind_eof(stream);
  CHECK(o.state == parse_state::done);
  CHECK(o.body == last);
  CHECK(o.trailers.empty());
}

TEST_CASE("podman's /events chunk (docs/protocols.md §2.5): a never-ending stream stays need_more") {
  const std::string event =
      "{\"status\":\"die\",\"id\":\"b381a769\",\"from\":\"localhost/"
      "bb:latest\",\"Type\":\"container\",\"Action\":\"die\","
      "\"Actor\":{\"ID\":\"b381a769\",\"Attributes\":{\"containerExitCode\":\"137\",\"exitCode\":\"137\",\"image\":"
      "\"localhost/bb:latest\",\"name\":\"rsq-ev2\",\"podId\":\"\",\"svc\":\"evtest\"}},\"scope\":\"local\",\"time\":"
      "1795554856,\"timeNano\":1795554856695874959}\n";
  std::ostringstream size;
  size << std::hex << event.size();
  const std::string stream = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                             size.str() + "\r\n" + event + "\r\n";
  auto o = grind(stream);
  CHECK(o.state == parse_state::need_more);
  CHECK(o.consumed == stream.size());
  CHECK(o.body == event);
  // podman's SIGTERM: a bare EOF with no 0 chunk.
  auto e = grind_eof(stream);
  CHECK(e.state == parse_state::error);
  CHECK(e.error == errc::chunk_truncated);
}

TEST_CASE("close-delimited body ends at EOF and is not reusable") {
  auto o = grind_eof("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
  CHECK(o.state == parse_state::done);
  CHECK(o.body == "until the end");
  CHECK_FALSE(o.keep_alive);
  // Without the EOF the parser keeps waiting.
  CHECK(grind("HTTP/1.1 200 OK\r\n\r\nabc").state == parse_state::need_more);
  // A transfer coding other than a final chunked also runs until EOF.
  auto g = grind_eof("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz");
  CHECK(g.state == parse_state::done);
  CHECK(g.body == "zzz");
}

TEST_CASE("responses without a body: 1xx, 204, 304, HEAD") {
  SUBCASE("204 and 304 ignore Content-Length") {
    for (std::string s : {"204 No Content", "304 Not Modified"}) {
      const std::string msg = "HTTP/1.1 " + s + "\r\nContent-Length: 10\r\n\r\n";
      auto o = grind(msg + "HTTP/1.1 200 OK\r\n");
      CHECK(o.state == parse_state::done);
      CHECK(o.consumed == msg.size());
      CHECK(o.body.empty());
      CHECK(o.keep_alive);
    }
  }
  SUBCASE("HEAD") {
    const std::string msg = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\n";
    auto o = grind(msg + "XX", [](http_response_parser& p) { p.head_request(true); });
    CHECK(o.state == parse_state::done);
    CHECK(o.consumed == msg.size());
    CHECK(o.body.empty());
    auto chunked = grind("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                         [](http_response_parser& p) { p.head_request(true); });
    CHECK(chunked.state == parse_state::done);
  }
  SUBCASE("100 Continue is a complete, body-less message; the real reply follows") {
    const std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
    auto o = grind(interim + "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
    CHECK(o.state == parse_state::done);
    CHECK(o.status == 100);
    CHECK(o.consumed == interim.size());
  }
  SUBCASE("Content-Length: 0") {
    auto o = grind("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    CHECK(o.state == parse_state::done);
    CHECK(o.body.empty());
  }
}

TEST_CASE("keep-alive: two responses back to back in one buffer") {
  const std::string first = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst";
  const std::string second = etcd_error_reply;
  const std::string both = first + second;
  auto o = grind(both);
  CHECK(o.state == parse_state::done);
  CHECK(o.consumed == first.size());  // the pipelined bytes are left alone
  CHECK(o.body == "first");

  http_response_parser p;
  auto r1 = p.feed(both);
  REQUIRE(r1.state == parse_state::done);
  CHECK(p.keep_alive());
  CHECK(p.release().body == "first");
  p.reset();
  auto r2 = p.feed(std::string_view(both).substr(r1.consumed));
  REQUIRE(r2.state == parse_state::done);
  CHECK(r2.consumed == second.size());
  CHECK(p.response().status == 400);
  CHECK(p.response().body == etcd_error_body);
  CHECK(p.response().trailers.size() == 1);

  // And the first response chunked, the second by length.
  auto o2 = grind(second + first);
  CHECK(o2.consumed == second.size());
}

TEST_CASE("Connection header and HTTP/1.0 decide keep-alive") {
  CHECK_FALSE(grind("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive);
  CHECK_FALSE(grind("HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n").keep_alive);
  CHECK_FALSE(grind("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
  CHECK(grind("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keep_alive);
  CHECK(grind("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keep_alive);
}

TEST_CASE("Content-Length duplicates: equal ones are fine, conflicting ones are refused") {
  auto same = grind("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc");
  CHECK(same.state == parse_state::done);
  CHECK(same.body == "abc");
  for (std::string cl :
       {"Content-Length: 3\r\nContent-Length: 4", "Content-Length: 3, 4", "Content-Length: abc", "Content-Length: -1",
        "Content-Length: 3x", "Content-Length:", "Content-Length: 99999999999999999999999"}) {
    CAPTURE(cl);
    auto o = grind("HTTP/1.1 200 OK\r\n" + cl + "\r\n\r\nabcd");
    CHECK(o.state == parse_state::error);
    CHECK(o.error == errc::bad_content_length);
  }
}

TEST_CASE("Transfer-Encoding: chunked wins over Content-Length") {
  auto o =
      grind("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
  CHECK(o.state == parse_state::done);
  CHECK(o.body == "ok");
}

TEST_CASE("bad status lines") {
  for (std::string bad :
       {"<html><body>Welcome</body></html>\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/2 200\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n", "HTTP/1.1 20\r\n\r\n", "HTTP/1.1 099 Low\r\n\r\n", "\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n", "HTTP/1.1 200 O\x01K\r\n\r\n", "http/1.1 200 OK\r\n\r\n"}) {
    CAPTURE(bad);
    auto o = grind(bad);
    CHECK(o.state == parse_state::error);
    CHECK(o.error == errc::bad_status_line);
  }
  // Garbage is refused from its first byte, without waiting for a line end.
  http_response_parser p;
  auto r = p.feed("<");
  CHECK(r.state == parse_state::error);
  CHECK(r.error == errc::bad_status_line);
}

TEST_CASE("bad header lines") {
  for (std::string bad : {"NoColon", ": empty-name", "Bad Name: x", "Name : x", " folded: x", "X-A: 1\r\n\tobs-fold",
                          "X-B: bad\x01value"}) {
    CAPTURE(bad);
    auto o = grind("HTTP/1.1 200 OK\r\n" + bad + "\r\nContent-Length: 0\r\n\r\n");
    CHECK(o.state == parse_state::error);
    CHECK(o.error == errc::bad_header);
  }
}

TEST_CASE("oversized header block and over-long line") {
  auto limits = [](http_response_parser& p) {
    p.max_header_bytes(256);
    p.max_line_length(64);
  };
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 20; ++i) many += "X-Header-" + std::to_string(i) + ": some value\r\n";
  many += "\r\n";
  auto big = grind(many, limits);
  CHECK(big.state == parse_state::error);
  CHECK(big.error == errc::header_too_large);

  auto line = grind("HTTP/1.1 200 OK\r\nX-Long: " + std::string(100, 'a') + "\r\n\r\n", limits);
  CHECK(line.state == parse_state::error);
  CHECK(line.error == errc::line_too_long);

  // Exactly at the limits is fine: a 64-byte line, with CRLF or LF.
  const std::string at_limit = "X-Long: " + std::string(64 - 8, 'a');
  REQUIRE(at_limit.size() == 64);
  CHECK(grind("HTTP/1.1 200 OK\r\n" + at_limit + "\r\nContent-Length: 0\r\n\r\n", limits).state == parse_state::done);
  CHECK(grind("HTTP/1.1 200 OK\n" + at_limit + "\nContent-Length: 0\n\n", limits).state == parse_state::done);
  CHECK(grind("HTTP/1.1 200 OK\r\n" + at_limit + "a\r\nContent-Length: 0\r\n\r\n", limits).error ==
        errc::line_too_long);

  // A trailer block is limited as well.
  auto trailer = grind("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + many.substr(17), limits);
  CHECK(trailer.error == errc::header_too_large);
  auto chunk_line =
      grind("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + std::string(100, 'e') + "\r\n", limits);
  CHECK(chunk_line.error == errc::line_too_long);
}

TEST_CASE("chunk errors: bad size, missing CRLF, too large") {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (std::string bad : {"zz\r\n", "\r\n", "-1\r\n", "5 x\r\nhello\r\n", "0x5\r\nhello\r\n", ";ext\r\n"}) {
    CAPTURE(bad);
    auto o = grind(head + bad);
    CHECK(o.state == parse_state::error);
    CHECK(o.error == errc::bad_chunk_size);
  }
  for (std::string bad : {"3\r\nabcX\r\n0\r\n\r\n", "3\r\nabc\rX0\r\n\r\n", "3\r\nabcd\r\n"}) {
    CAPTURE(bad);
    auto o = grind(head + bad);
    CHECK(o.state == parse_state::error);
    CHECK(o.error == errc::bad_chunk_terminator);
  }
  auto overflow = grind(head + "10000000000000000\r\n");
  CHECK(overflow.error == errc::chunk_too_large);
  auto limited = grind(
      head + "11\r\n", [](http_response_parser& p) { p.max_body_bytes(16); }, false, false);
  CHECK(limited.error == errc::chunk_too_large);
  auto total = grind(head + "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
                     [](http_response_parser& p) { p.max_body_bytes(16); });
  CHECK(total.error == errc::body_too_large);
  auto bad_trailer = grind(head + "0\r\nno colon here\r\n\r\n");
  CHECK(bad_trailer.error == errc::bad_header);
}

TEST_CASE("body limits apply when gathering, not when streaming") {
  auto small = [](http_response_parser& p) { p.max_body_bytes(4); };
  auto o = grind("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", small);
  CHECK(o.error == errc::body_too_large);
  auto e = grind_eof("HTTP/1.1 200 OK\r\n\r\nhello", small);
  CHECK(e.error == errc::body_too_large);
  CHECK(grind("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhell", small).state == parse_state::done);

  http_response_parser p;
  p.max_body_bytes(4);
  std::string got;
  p.on_body([&](std::string_view s) { got.append(s); });
  auto r = p.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  CHECK(r.state == parse_state::done);
  CHECK(got == "hello");
}

TEST_CASE("EOF in the wrong place: truncated body, EOF mid-chunk, EOF before the last chunk, EOF in the head") {
  auto body = grind_eof("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly");
  CHECK(body.state == parse_state::error);
  CHECK(body.error == errc::body_truncated);
  CHECK(body.body == "only");

  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (std::string cut :
       {"", "a\r\nhal", "a\r\n0123456789", "a\r\n0123456789\r\n", "0\r\n", "0\r\nTrailer: x\r\n", "5"}) {
    CAPTURE(cut);
    auto o = grind_eof(head + cut);
    CHECK(o.state == parse_state::error);
    CHECK(o.error == errc::chunk_truncated);
  }
  for (std::string cut : {"", "HTTP/1.1 200 OK\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", "HTT"}) {
    CAPTURE(cut);
    auto o = grind_eof(cut);
    CHECK(o.state == parse_state::error);
    CHECK(o.error == errc::connection_closed);
  }
}

TEST_CASE("pause_after_head: the caller sees the status before choosing where the body goes") {
  const std::string msg = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
  http_response_parser p;
  p.pause_after_head(true);
  auto r = p.feed(msg);
  REQUIRE(r.state == parse_state::head_done);
  CHECK(p.head_done());
  CHECK_FALSE(p.done());
  CHECK(r.consumed == msg.find("3\r\n"));
  CHECK(p.response().status == 200);
  std::vector<std::string> pieces;
  p.on_body([&](std::string_view s) { pieces.emplace_back(s); });
  auto r2 = p.feed(std::string_view(msg).substr(r.consumed));
  CHECK(r2.state == parse_state::done);
  CHECK(r2.consumed == msg.size() - r.consumed);
  CHECK(pieces == std::vector<std::string>{"abc", "def"});
  CHECK(p.response().body.empty());

  // A body-less response is simply done.
  http_response_parser q;
  q.pause_after_head(true);
  CHECK(q.feed("HTTP/1.1 204 No Content\r\n\r\n").state == parse_state::done);
}

TEST_CASE("streaming hands out each piece as it arrives") {
  http_response_parser p;
  std::vector<std::string> pieces;
  p.on_body([&](std::string_view s) { pieces.emplace_back(s); });
  CHECK(p.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nab").state == parse_state::need_more);
  CHECK(pieces == std::vector<std::string>{"ab"});
  CHECK(p.feed("cd").state == parse_state::need_more);
  CHECK(p.feed("ef\r\n").state == parse_state::need_more);
  CHECK(pieces == std::vector<std::string>{"ab", "cd", "ef"});
}

TEST_CASE("after done or error the parser answers the same without consuming") {
  http_response_parser p;
  REQUIRE(p.feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").state == parse_state::done);
  auto again = p.feed("more");
  CHECK(again.state == parse_state::done);
  CHECK(again.consumed == 0);
  http_response_parser q;
  REQUIRE(q.feed("garbage").state == parse_state::error);
  auto r = q.feed("HTTP/1.1 200 OK\r\n");
  CHECK(r.state == parse_state::error);
  CHECK(r.error == errc::bad_status_line);
  CHECK(q.finish_eof().error == errc::bad_status_line);
  CHECK_FALSE(q.head_done());
}

TEST_CASE("error messages name the problem") {
  CHECK(std::error_code(errc::bad_chunk_terminator).message() == "chunk data not followed by CRLF");
  CHECK(std::error_code(errc::chunk_truncated).message() == "connection closed inside a chunked body");
}

}  // namespace http_response_test
