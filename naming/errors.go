package naming

import "errors"

// Errors, checked with errors.Is. The client wraps each with what the server said.
var (
	// ErrNotFound: the name is not bound.
	ErrNotFound = errors.New("ftsl: naming: name not bound")

	// ErrTaken: Bind found the name bound already; Rebind replaces a binding.
	ErrTaken = errors.New("ftsl: naming: name already bound")

	// ErrVersionMismatch: a conditional write (UnbindVersion) found the name at another
	// version: someone else rebound it since. Look it up again before deciding.
	ErrVersionMismatch = errors.New("ftsl: naming: binding changed since that version")

	// ErrUnauthorized: the server wants a bearer token for writes, and the client's Token is
	// missing or wrong.
	ErrUnauthorized = errors.New("ftsl: naming: unauthorized (set Client.Token to the server's token)")

	// ErrInvalidName: a name is empty, longer than MaxNameLength, or has a byte outside
	// [A-Za-z0-9._-], or does not start with a letter or digit.
	ErrInvalidName = errors.New("ftsl: naming: invalid name")

	// ErrInvalidAddr: an address is not host:port with a host and a port from 1 to 65535.
	ErrInvalidAddr = errors.New("ftsl: naming: invalid address")

	// ErrBadRequest: the server refused the request as malformed (bad JSON, a body over
	// MaxBodyBytes, a bad parameter, a method it does not take).
	ErrBadRequest = errors.New("ftsl: naming: bad request")

	// ErrFull: the server holds MaxNames names and takes no new one; rebinding or unbinding a
	// name it holds still works.
	ErrFull = errors.New("ftsl: naming: server holds its maximum of names")

	// ErrUnavailable: the server is closing, or holds its maximum of waiting watches; try
	// again later.
	ErrUnavailable = errors.New("ftsl: naming: server unavailable")

	// ErrServer: the server failed (its data file could not be written, for one), or answered
	// something this client does not understand.
	ErrServer = errors.New("ftsl: naming: server error")
)
