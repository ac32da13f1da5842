// Package subjects is the subject engine of the pubsub hub: the rules for subjects and
// subscription patterns, an index from subjects to the subscriptions that match them, and
// permissions over subjects. Its semantics are NATS's, so that a NATS user finds what they know.
//
// A subject is one or more tokens separated by dots, such as "orders.eu.created"; tokens are
// non-empty and hold no whitespace or control characters. Publishers use literal subjects.
// Subscribers use patterns, in which the token "*" matches exactly one token and a last token
// ">" matches one or more: "orders.*.created" and "orders.>" both match the subject above, and
// "orders.>" does not match "orders". A token that only contains "*" or ">", such as "a*", is
// literal. ValidatePublish, ValidateSubscribe and ValidateQueue check all of this.
//
// An Index holds Subscriptions (the hub's data rides in each one's Value) and answers Match:
// every plain subscription whose pattern matches, and every queue group with its matching
// members; the hub delivers to each plain subscription and to one member of each group
// (Group.Pick). Results for subjects seen before come from a bounded cache without allocating.
//
// Rules are allow and deny lists of patterns: CanPublish, CanSubscribe (a wildcard subscription
// must lie wholly within what is allowed) and Deliverable (deny patterns checked per message
// for subscriptions that overlap them).
package subjects
