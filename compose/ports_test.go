package compose

import (
	"reflect"
	"testing"
)

func TestHostPorts(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  web:
    image: nginx
    ports:
      - "127.0.0.1:8443:443"
      - "8080:80"
      - "8080:80"
      - "5353:53/udp"
      - "[::1]:9000:9000"
      - "9100-9105:9100"
      - "3000"
`})
	p := load(t, testOptions(dir))
	got := p.Service("web").HostPorts()
	want := []HostPort{
		{IP: "", Port: 5353, Proto: "udp"},
		{IP: "", Port: 8080, Proto: "tcp"},
		{IP: "127.0.0.1", Port: 8443, Proto: "tcp"},
		{IP: "::1", Port: 9000, Proto: "tcp"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("HostPorts = %+v\nwant %+v", got, want)
	}
	if s := want[2].String(); s != "127.0.0.1:8443/tcp" {
		t.Errorf("String = %q", s)
	}
	if s := want[1].String(); s != "0.0.0.0:8080/tcp" {
		t.Errorf("String = %q", s)
	}
}

func TestHostPortOverlaps(t *testing.T) {
	tcp := func(ip string, port int) HostPort { return HostPort{IP: ip, Port: port, Proto: "tcp"} }
	tests := []struct {
		a, b HostPort
		want bool
	}{
		{tcp("127.0.0.1", 80), tcp("127.0.0.1", 80), true},
		{tcp("127.0.0.1", 80), tcp("127.0.0.2", 80), false},
		{tcp("", 80), tcp("127.0.0.1", 80), true},
		{tcp("0.0.0.0", 80), tcp("10.0.0.1", 80), true},
		{tcp("10.0.0.1", 80), tcp("::", 80), true},
		{tcp("127.0.0.1", 80), tcp("127.0.0.1", 81), false},
		{tcp("", 53), HostPort{Port: 53, Proto: "udp"}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Overlaps(tt.b); got != tt.want {
			t.Errorf("%v overlaps %v = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := tt.b.Overlaps(tt.a); got != tt.want {
			t.Errorf("%v overlaps %v = %v, want %v (not symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}
