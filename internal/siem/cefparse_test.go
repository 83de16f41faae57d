package siem

import (
	"errors"
	"fmt"
	"strings"
)

// cefLine is a parsed CEF line: the seven header fields (version, vendor,
// product, device version, class id, name, severity) and the extension.
type cefLine struct {
	header [7]string
	ext    map[string]string
	keys   []string // extension keys in order
}

// parseCEF is a deliberately strict CEF parser, written from the
// specification rather than from FormatCEF: it refuses any escape the
// specification does not define, a line break anywhere, a key that is not
// alphanumeric, and a repeated key.
func parseCEF(line string) (cefLine, error) {
	var c cefLine
	if strings.ContainsAny(line, "\r\n") {
		return c, errors.New("line break in line")
	}
	rest, ok := strings.CutPrefix(line, "CEF:")
	if !ok {
		return c, errors.New("no CEF: prefix")
	}
	for i := range c.header {
		var field strings.Builder
		j := 0
		for ; j < len(rest); j++ {
			ch := rest[j]
			if ch == '|' {
				break
			}
			if ch == '\\' {
				if j+1 == len(rest) || (rest[j+1] != '\\' && rest[j+1] != '|') {
					return c, fmt.Errorf("header field %d: bad escape", i)
				}
				j++
				ch = rest[j]
			}
			field.WriteByte(ch)
		}
		if j == len(rest) {
			return c, fmt.Errorf("header has %d fields, want 7", i+1)
		}
		c.header[i] = field.String()
		rest = rest[j+1:]
	}
	ext, err := parseExtension(rest)
	if err != nil {
		return c, err
	}
	c.ext = map[string]string{}
	for _, kv := range ext {
		if _, dup := c.ext[kv[0]]; dup {
			return c, fmt.Errorf("key %q repeated", kv[0])
		}
		c.ext[kv[0]] = kv[1]
		c.keys = append(c.keys, kv[0])
	}
	return c, nil
}

// parseExtension splits "k1=v1 k2=v 2" into pairs: every unescaped '=' ends
// a key, which runs back to the last space before it; the value before
// that space belongs to the previous key.
func parseExtension(s string) ([][2]string, error) {
	var (
		pairs     [][2]string
		key       string
		val       strings.Builder // the unescaped text since the last '='
		lastSpace = -1            // index in val of its last space
	)
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case '\\':
			if i+1 == len(s) {
				return nil, errors.New("dangling backslash")
			}
			i++
			switch s[i] {
			case '\\', '=':
				val.WriteByte(s[i])
			case 'n':
				val.WriteByte('\n')
			case 'r':
				val.WriteByte('\r')
			default:
				return nil, fmt.Errorf("bad escape \\%c", s[i])
			}
		case '=':
			text, start := val.String(), 0
			if key != "" {
				if lastSpace < 0 {
					return nil, errors.New("unescaped '=' inside a value")
				}
				start = lastSpace + 1
				pairs = append(pairs, [2]string{key, text[:lastSpace]})
			}
			if key = text[start:]; !isKey(key) {
				return nil, fmt.Errorf("bad key %q", key)
			}
			val.Reset()
			lastSpace = -1
		default:
			if ch == ' ' {
				lastSpace = val.Len()
			}
			val.WriteByte(ch)
		}
	}
	if key == "" {
		return nil, errors.New("no key")
	}
	return append(pairs, [2]string{key, val.String()}), nil
}

func isKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}
