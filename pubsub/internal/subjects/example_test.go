package subjects_test

import (
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/ftsl-go/ftsl/pubsub/internal/subjects"
)

// sub is what a hub keeps per subscription.
type sub struct {
	client string
	sid    uint64
}

// A hub indexes its clients' subscriptions and delivers a message to every plain subscription
// that matches and to one member of each queue group.
func Example() {
	ix, err := subjects.New[sub](subjects.Config{})
	if err != nil {
		panic(err)
	}
	for _, s := range []struct{ client, pattern, queue string }{
		{"alice", "orders.*.created", ""},
		{"bob", "orders.>", ""},
		{"w1", "orders.eu.*", "workers"},
		{"w2", "orders.eu.*", "workers"},
	} {
		if err := ix.Insert(subjects.NewSubscription(s.pattern, s.queue, sub{client: s.client})); err != nil {
			panic(err)
		}
	}

	subject := "orders.eu.created"
	if err := subjects.ValidatePublish(subject, 0); err != nil {
		panic(err)
	}
	r := ix.Match(subject)
	var to []string
	for _, s := range r.Plain {
		to = append(to, s.Value.client)
	}
	var next atomic.Uint64 // round-robin over the group's members
	for _, g := range r.Groups {
		to = append(to, g.Name+":"+g.Pick(next.Add(1), nil).Value.client)
	}
	slices.Sort(to)
	fmt.Println(to)
	// Output: [alice bob workers:w2]
}

// A subscriber allowed orders.* and orders.*.> may subscribe to orders.> (the two together
// cover it), and sees no message on the denied orders.secret.
func ExampleRules() {
	r, err := subjects.NewRules([]string{"orders.*", "orders.*.>"}, []string{"orders.secret"}, 0)
	if err != nil {
		panic(err)
	}
	fmt.Println(r.CanSubscribe("orders.>"), r.CanSubscribe(">"), r.CanSubscribe("orders.secret"))
	fmt.Println(r.NeedsDeliveryCheck("orders.>"), r.Deliverable("orders.secret"), r.Deliverable("orders.eu"))
	// Output:
	// true false false
	// true false true
}

func ExampleValidateSubscribe() {
	for _, p := range []string{"a.*.c", "a.>", "a.>.c", "a..c"} {
		fmt.Println(subjects.ValidateSubscribe(p, 0))
	}
	// Output:
	// <nil>
	// <nil>
	// ftsl: invalid subject: pattern "a.>.c" has a token after ">" (at byte 4); ">" must be the last token
	// ftsl: invalid subject: pattern "a..c" has an empty token at byte 2
}

func ExampleIsSubset() {
	fmt.Println(subjects.IsSubset("a.b.>", "a.>"), subjects.IsSubset("a.>", "a.*"))
	// Output: true false
}
