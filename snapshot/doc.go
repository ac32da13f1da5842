// Package snapshot turns a frozen server's state into a file and back (the paper's section
// III-C): a server is paused and its state taken (Freeze), written to a file (WriteFile), and
// read by another process (ReadFile), which rebuilds the server on another address with
// core.NewListenerFrom, oneway.NewListenerFrom or pubsub.RestoreHub; the clients resume there.
// Migrate makes a move inside one process in one call, through memory or a file.
//
// A Snapshot is a list of named sections, one per layer: "core" for the sessions' protocol
// state, "oneway" for their tickets and attempts, a layer above under a name of its own
// ("pubsub"), and the application's own data under a name of its choosing ("app" by
// convention). Each layer encodes its own section (Layer); this package only stores them. The
// file (FORMAT.md) carries a checksum per section and one over the whole file, so a file cut
// short or damaged is refused, never read as a different state; it is written to a temporary
// file and renamed, so a crash leaves the old file whole.
//
// In the process that stops:
//
//	snap, err := snapshot.Freeze(ctx, ln) // ln: a *oneway.Listener; its sessions pause
//	if err != nil { ... }
//	if err := snap.PutBytes("app", appState); err != nil { ... }
//	if err := snap.WriteFile(path); err != nil { ... } // the sessions are in snap only: retry
//	ln.Close()
//
// In the process that takes over:
//
//	snap, err := snapshot.ReadFile(path)
//	st, err := snapshot.Oneway(snap)
//	ln, sessions, err := oneway.NewListenerFrom(netListener, cfg, st)
//	app, err := snap.Bytes("app")
//	// rebind the name the clients resolve, then:
//	err = ln.Continue()
//
// A snapshot holds every session's secret resume token: WriteFile makes the file readable by
// its owner only, and it deserves the care of the server's memory.
package snapshot
