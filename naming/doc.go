// Package naming is the naming service through which FTSL clients find a server that moves
// (the paper's section III-C): a server binds its name to its address, a client dials the name,
// and when the server migrates it rebinds the name and its clients resume at the new address.
//
// The paper's clients asked the naming service again on each reconnection attempt, so a move
// was seen only at a client's next attempt, and that wait dominated the migration time. Here a
// client watches: Resolver keeps a long-poll watch of every name it resolved, and as a
// core.WatchingResolver it wakes a client waiting out its reconnection backoff the moment the
// name is rebound.
//
// The parts:
//
//   - Server: the service, an http.Handler (the ftsl-naming command serves it). Bindings persist
//     in a data file.
//   - Client: its API in Go: Lookup, Bind, Rebind, Unbind, UnbindVersion and Watch.
//   - Resolver: a core.WatchingResolver over a Client, for core.Config.Resolver.
//   - StaticResolver: a core.WatchingResolver over a map the application changes.
//   - SRVResolver: a core.Resolver over DNS SRV records.
//
// The package does not import core: its resolvers fit core's interfaces by their methods.
//
// # HTTP API
//
// Every request is about one name, at the path /v1/names/{name}. A name is 1 to 253 bytes of
// A-Z, a-z, 0-9, '.', '-' and '_', starting with a letter or digit. Bodies are JSON. A binding
// is
//
//	{"name": "chat", "addr": "10.0.0.7:4300", "version": 12}
//
// where addr is host:port (a host, and a port from 1 to 65535) and version is the server's
// version counter at the binding's last write. Every write (bind, rebind, unbind) advances the
// counter by one, so a name's versions only grow, across server restarts too.
//
//	GET /v1/names/{name}                   lookup
//	GET /v1/names/{name}?index=N&wait=T    watch
//	POST /v1/names/{name}   {"addr": A}    bind: only a free name
//	PUT /v1/names/{name}    {"addr": A}    rebind: replace, or create
//	DELETE /v1/names/{name}[?version=V]    unbind: in any case, or only at version V
//
// Lookup answers 200 with the binding, or 404.
//
// Watch is a lookup that waits, after Consul's blocking queries: it answers as soon as the
// name's state may differ from what a watcher that saw index N has: the binding's version is
// above N, or the name was unbound after N; or when the wait T (a Go duration such as "30s",
// default 5m, capped at the server's MaxWait, 10m by default) and a random sixteenth of it more
// have passed, with the state unchanged then. Index 0 answers at once. An index above the
// server's own (the server lost its data, or is another one) also answers at once. A watch of a
// name not bound waits for it to be bound; the server forgets old unbinds, and may then answer
// at once with 404 where it cannot tell. A watch may answer with nothing changed: a client
// compares versions. Beyond MaxWatchers waiting watches the server answers 503 with Retry-After.
//
// Bind answers 201 with the binding, or 409 if the name is bound (the body tells the binding).
// Rebind answers 200 if it replaced a binding, 201 if it created one. Unbind answers 200 with
// {"name": ..., "version": V'}, V' the version of the unbind, 404 if the name is not bound, or
// 409 if version was given and the binding is at another (the name moved on: it is not
// removed). A bind of a new name when the server holds MaxNames names answers 507.
//
// Every answer about a name carries the header X-Ftsl-Index: the index to send as the next
// watch's index parameter, which is the binding's version, or for a name not bound the
// server's version counter (at least 1).
//
// Writes need "Authorization: Bearer <token>" when the server has a token; without it, or with
// a wrong one, they are answered 401 with WWW-Authenticate. Lookups and watches need none.
//
// Errors answer with a JSON body {"error": "what is wrong"} and these statuses: 400 for a bad
// name, a bad address, malformed JSON (unknown fields and trailing data included) or a bad
// index, wait or version parameter; 401; 404 for a name not bound or a path outside the API;
// 405 for another method, with Allow; 409; 413 for a body over 64 KiB; 500 if the data file
// could not be written (nothing changed); 503 after Server.Close, or over MaxWatchers; 507.
// Answers are Content-Type application/json and Cache-Control no-store.
//
// # Data file
//
// With ServerConfig.DataFile the bindings and the version counter persist in a JSON file,
// rewritten whole by every write before the write is answered: into a temporary file in the
// same directory, synced, renamed over the old one, and the directory synced. It is created with
// mode 0600. A write that could not be saved changes nothing and answers 500.
package naming
