package triggers

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEqualityKey(t *testing.T) {
	t.Parallel()
	env, err := NewWaitEnv()
	require.NoError(t, err)
	for _, tc := range []struct {
		expr, async, event string
		ok                 bool
	}{
		{`async.data.userId == event.data.userId`, "data.userId", "data.userId", true},
		{`event.data.id == async.data.orderId`, "data.orderId", "data.id", true},
		{`async.data.amount > 10 && async.data.user.id == event.data.uid`, "data.user.id", "data.uid", true},
		{`(async.data.a == event.data.a) && async.data.b in ["x"]`, "data.a", "data.a", true},
		{`async.data.a == event.data.a || async.data.b == event.data.b`, "", "", false}, // an || cannot narrow
		{`async.data.a == "literal"`, "", "", false},
		{`async.data.a != event.data.a`, "", "", false},
		{`!(async.data.a == event.data.a)`, "", "", false},
		{`has(async.data.a) && async.data.a == event.data.a`, "data.a", "data.a", true},
		{`async.data == event.data`, "", "", false}, // "data" alone is not a match path
		{`async.data.a ==`, "", "", false},
	} {
		ap, ep, ok := env.EqualityKey(tc.expr)
		require.Equal(t, tc.ok, ok, tc.expr)
		require.Equal(t, tc.async, ap, tc.expr)
		require.Equal(t, tc.event, ep, tc.expr)
	}
}
