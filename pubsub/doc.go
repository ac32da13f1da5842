// Package pubsub is publish/subscribe over FTSL sessions: a Hub fans messages out to the clients
// that subscribed to their subjects, and every hop is a oneway session, so clients ride through
// broken connections with nothing lost and nothing duplicated.
//
// What it adds to a broker like NATS core: a publisher never waits for subscribers, yet learns,
// per publish, how many subscribers matched, got and processed the message, and which failed and
// why (a Ticket and its Outcome). Subjects follow NATS's rules: dot-separated tokens, "*" for one
// token, ">" for the rest; queue groups share their messages among their members.
//
// A hub runs in its own process (pubsub/cmd/ftsl-hub) or inside an application, which may then
// publish and subscribe in-process too (Hub.Connect). Clients connect with Dial.
//
//   - Publish returns a Ticket once the message is buffered. At AckNone the ticket ends when the
//     hub accepted the message; at AckDelivered when every matched subscriber's application was
//     handed it; at AckProcessed when every one confirmed or failed it. Outcomes of different
//     publishes may end in any order.
//   - Subscribe runs a handler per message: nil confirms it, an error or a panic fails that
//     attempt, and the message comes again (Msg.Redelivered, Msg.Attempt) up to the session's
//     MaxAttempts; then the publisher's outcome lists the failure. SubscribeChan hands messages
//     to a channel instead, and the application calls Confirm or Reject.
//   - Request sends a message and waits for the first answer, which a subscriber gives with
//     Msg.Respond, through an inbox subject as NATS does.
//
// Subscriptions live as long as the client's session: they survive reconnections with nothing
// to redo, and end, loudly, if the session is lost. A client's Events say when its connection
// died and when the session resumed (SessionReconnecting, SessionResumed), for an application
// that shows it. A client that subscribes to what it publishes itself and wants only the others'
// messages sets Config.NoEcho.
package pubsub
