package pubsub

// interner hands out one string per distinct byte sequence it is shown (subjects, names), so a
// stream of messages on a few subjects allocates no string per message. It keeps at most
// maxInterned strings (then starts over, giving the old ones back) and finds the last two it
// returned, a stream's subject and publisher, without hashing. Its zero value is ready; it is
// not safe for concurrent use.
type interner struct {
	strings map[string]string
	recent  [2]string
}

const maxInterned = 1024

func (in *interner) intern(b []byte) string {
	for _, s := range in.recent {
		if string(b) == s {
			return s
		}
	}
	s, ok := in.strings[string(b)]
	if !ok {
		s = string(b)
		if in.strings == nil || len(in.strings) >= maxInterned {
			in.strings = make(map[string]string)
		}
		in.strings[s] = s
	}
	in.recent[1], in.recent[0] = in.recent[0], s
	return s
}
