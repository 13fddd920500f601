package triggers

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest event name or event-name pattern, in characters
// (as ingest counts an event's name).
const MaxNameLen = 256

// ValidateName reports whether name is a valid event name: 1 to MaxNameLen
// characters of valid UTF-8 with no white space, no control or other invisible
// characters and no '*'. Names may use the reserved "herald/" prefix; deciding who may send
// such events is the caller's business.
func ValidateName(name string) error {
	if err := validateChars("event name", name); err != nil {
		return err
	}
	if i := strings.IndexByte(name, '*'); i >= 0 {
		return fmt.Errorf("triggers: event name %q: '*' at byte %d is not allowed in an event name", name, i)
	}
	return nil
}

// ValidatePattern reports whether p is a valid event-name pattern.
//
// A pattern is either an exact event name (see [ValidateName]) or a
// wildcard: a name prefix that ends in '/' or '.' followed by a single
// '*' as the last character, such as "app/*" or "app/user.*". A wildcard
// matches every name that starts with the prefix and has at least one more
// character, across any number of further segments: "app/*" matches
// "app/user.created" and "app/a/b". '*' anywhere else ("app/us*",
// "app/*/x", "*", "app/**") is rejected. Patterns may start with "herald/"
// so functions can trigger on system events such as
// "herald/function.failed".
func ValidatePattern(p string) error {
	if err := validateChars("event pattern", p); err != nil {
		return err
	}
	i := strings.IndexByte(p, '*')
	switch {
	case i < 0:
		return nil
	case i+1 < len(p) && p[i+1] == '*':
		return fmt.Errorf("triggers: event pattern %q: '**' is not supported; a single trailing '*' already matches any number of segments (\"app/*\" matches \"app/a/b\")", p)
	case i != len(p)-1:
		return fmt.Errorf("triggers: event pattern %q: '*' at byte %d must be the last character (use a wildcard such as \"app/*\" or \"app/user.*\")", p, i)
	case i == 0:
		return fmt.Errorf("triggers: event pattern %q: a wildcard needs a prefix ending in '/' or '.', such as \"app/*\"", p)
	case p[i-1] != '/' && p[i-1] != '.':
		return fmt.Errorf("triggers: event pattern %q: '*' must come directly after '/' or '.' (\"app/*\" or \"app/user.*\"), not in the middle of a word", p)
	}
	return nil
}

// MatchName reports whether the event name matches pattern, following the
// rules of [ValidatePattern]: an exact pattern matches only the identical
// name, and a wildcard matches names that extend its prefix by at least one
// character. A pattern with '*' anywhere but a valid wildcard position
// matches nothing. MatchName does not validate name.
func MatchName(pattern, name string) bool {
	if prefix, ok := wildcardPrefix(pattern); ok {
		return len(name) > len(prefix) && strings.HasPrefix(name, prefix)
	}
	if strings.IndexByte(pattern, '*') >= 0 {
		return false
	}
	return pattern == name
}

// wildcardPrefix returns the part of a wildcard pattern before its '*',
// including the trailing separator, and whether p is a well-formed wildcard.
func wildcardPrefix(p string) (string, bool) {
	n := len(p)
	if n < 2 || strings.IndexByte(p, '*') != n-1 || !isSep(p[n-2]) {
		return "", false
	}
	return p[:n-1], true
}

func isSep(b byte) bool { return b == '/' || b == '.' }

func validateChars(what, s string) error {
	if s == "" {
		return errors.New("triggers: " + what + " is empty")
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("triggers: %s %.40q is not valid UTF-8", what, s)
	}
	// Characters, as ingest counts an event's name.
	if n := utf8.RuneCountInString(s); n > MaxNameLen {
		return fmt.Errorf("triggers: %s %.40q…: %d characters is longer than the limit of %d", what, s, n, MaxNameLen)
	}
	for i, r := range s {
		if unicode.IsSpace(r) {
			return fmt.Errorf("triggers: %s %q: white space %U at byte %d", what, s, r, i)
		}
		// IsGraphic also rules out invisible format characters (such as
		// U+200B), which would make two names look equal and differ.
		if !unicode.IsGraphic(r) {
			return fmt.Errorf("triggers: %s %q: control or invisible character %U at byte %d", what, s, r, i)
		}
	}
	return nil
}
