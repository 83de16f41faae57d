package httpapi

// RouteTable lists "METHOD pattern" for every registered route, for the
// OpenAPI coverage test.
func RouteTable() []string {
	out := make([]string, len(routes))
	for i, r := range routes {
		out[i] = r.method + " " + r.pattern
	}
	return out
}
