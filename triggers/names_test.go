package triggers

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidatePattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		wantErr string // substring; "" means valid
	}{
		{"app/user.created", ""},
		{"app/*", ""},
		{"app/user.*", ""},
		{"a.*", ""},
		{"herald/function.failed", ""},
		{"herald/*", ""},
		{"x", ""},
		{"app/ünïcode.évent", ""},
		{strings.Repeat("a", 256), ""},
		{strings.Repeat("a", 254) + "/*", ""},

		{"", "empty"},
		{strings.Repeat("a", 257), "longer than the limit"},
		{"*", "needs a prefix"},
		{"app/us*", "directly after '/' or '.'"},
		{"app/**", "'**' is not supported"},
		{"**", "'**' is not supported"},
		{"app/*/x", "must be the last character"},
		{"app/*.*", "must be the last character"},
		{"*app", "must be the last character"},
		{"app*", "directly after '/' or '.'"},
		{"app/user created", "white space"},
		{"app/user\tcreated", "white space"},
		{"app/user\u00a0created", "white space"},
		{"app/user\ncreated", "white space"},
		{"app/user\x00created", "control"},
		{"app/user\x7fcreated", "control"},
		{"app/user\u200bcreated", "invisible"},
		{"app/\xffbad", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			t.Parallel()
			err := ValidatePattern(tt.pattern)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	require.NoError(t, ValidateName("app/user.created"))
	require.NoError(t, ValidateName("herald/function.failed"))
	require.ErrorContains(t, ValidateName("app/*"), "'*'")
	require.ErrorContains(t, ValidateName(""), "empty")
	require.ErrorContains(t, ValidateName("a b"), "white space")
}

func TestMatchName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"app/user.created", "app/user.created", true},
		{"app/user.created", "app/user.created2", false},
		{"app/user.created", "app/user", false},
		{"app/*", "app/user.created", true},
		{"app/*", "app/a/b/c", true},
		{"app/*", "app/", false}, // '*' needs at least one character
		{"app/*", "app", false},
		{"app/*", "apps/x", false},
		{"app/user.*", "app/user.created", true},
		{"app/user.*", "app/user.deleted.v2", true},
		{"app/user.*", "app/users.created", false},
		{"app/user.*", "app/user", false},
		{"herald/function.*", "herald/function.failed", true},
		// Invalid wildcards match nothing rather than guessing.
		{"app/us*", "app/user", false},
		{"app/us*", "app/us*", false},
		{"*", "anything", false},
		{"app/*/x", "app/y/x", false},
		{"app/**", "app/*x", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"~"+tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, MatchName(tt.pattern, tt.name))
		})
	}
}

// Names are limited in characters, as ingest counts them, so any name ingest
// accepts can be named by a trigger.
func TestNameLimitInCharacters(t *testing.T) {
	long := strings.Repeat("é", MaxNameLen) // 512 bytes
	require.NoError(t, ValidateName(long))
	require.NoError(t, ValidatePattern(long))
	require.True(t, MatchName(long, long))
	require.ErrorContains(t, ValidateName(long+"é"), "257 characters is longer than the limit of 256")
}
