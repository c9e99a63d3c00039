package lab

// Family selects an address family: IPv4 (iptables) or IPv6 (ip6tables).
// It lives here, at the bottom, so that topology, the rule mechanism and
// the observation all speak of the same type.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// Valid reports whether f is IPv4 or IPv6.
func (f Family) Valid() bool { return f == IPv4 || f == IPv6 }
