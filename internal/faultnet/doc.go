// Package faultnet breaks TCP connections on purpose, so that tests of the
// session protocol can prove it survives the failures real networks produce:
// resets, silent stalls (a pulled cable), and cuts in the middle of a frame or
// of a handshake.
//
// Two tools cover the two places a fault can be injected:
//
//   - Proxy sits between a client and a server as a separate TCP hop on
//     loopback. Neither endpoint needs to cooperate, so it exercises the
//     code exactly as it runs in production, and it can break both sides at
//     once the way a middlebox or a dying link would.
//   - Conn (and Dialer, which makes them) wraps one endpoint's net.Conn.
//     It breaks at an exact byte offset chosen by the test, which a proxy
//     cannot guarantee when both directions are busy, and it needs no extra
//     hop.
//
// Only loopback addresses are meant to carry the traffic: the proxy listens
// on 127.0.0.1 and nothing here talks to the outside world.
package faultnet
