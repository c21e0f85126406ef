package envoy

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// The static bootstrap and the xDS snapshot come from the same builders:
// same clusters, same routes, and listeners that differ only in where routes
// and the certificate come from.
func TestStaticAndXDSAgree(t *testing.T) {
	c := testConfig(t)
	for _, f := range []string{"c.crt", "c.key"} {
		writeFile(t, c.Path(f), "PEM "+f)
	}
	b, err := Bootstrap(c)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := Snapshot(c, "1", "")
	if err != nil {
		t.Fatal(err)
	}
	var xdsClusters []*clusterv3.Cluster
	for _, r := range snap.GetResources(resourcev3.ClusterType) {
		xdsClusters = append(xdsClusters, r.(*clusterv3.Cluster))
	}
	if len(xdsClusters) != len(b.StaticResources.Clusters) {
		t.Fatalf("%d xds clusters, %d static", len(xdsClusters), len(b.StaticResources.Clusters))
	}
	byName := map[string]*clusterv3.Cluster{}
	for _, cl := range xdsClusters {
		byName[cl.Name] = cl
	}
	for _, cl := range b.StaticResources.Clusters {
		if !proto.Equal(cl, byName[cl.Name]) {
			t.Errorf("cluster %s differs", cl.Name)
		}
	}
	staticL := b.StaticResources.Listeners[0]
	xdsL := snap.GetResources(resourcev3.ListenerType)[ListenerName].(*listenerv3.Listener)
	sh, xh := hcmOf(t, staticL), hcmOf(t, xdsL)
	rds := snap.GetResources(resourcev3.RouteType)[RouteName].(*routev3.RouteConfiguration)
	if !proto.Equal(sh.GetRouteConfig(), rds) {
		t.Error("RDS route configuration differs from the static one")
	}
	sh.RouteSpecifier, xh.RouteSpecifier = nil, nil
	if !proto.Equal(sh, xh) {
		t.Error("connection managers differ beyond the route source")
	}
	st, xt := tlsOf(t, staticL), tlsOf(t, xdsL)
	if len(xt.CommonTlsContext.TlsCertificateSdsSecretConfigs) != 1 || len(st.CommonTlsContext.TlsCertificates) != 1 {
		t.Error("certificate sources are not file (static) and SDS (xds)")
	}
	if snap.GetResources(resourcev3.SecretType)[CertSecret] == nil {
		t.Error("no certificate secret in the snapshot")
	}
	other, _ := Snapshot(c, "2", "127.0.0.1:20000")
	if got := other.GetResources(resourcev3.ListenerType)[ListenerName].(*listenerv3.Listener).Address.GetSocketAddress().GetPortValue(); got != 20000 {
		t.Errorf("listen override: port %d", got)
	}
	if _, err := XDSBootstrap(c, "node-a", "", "127.0.0.1:20001"); err != nil {
		t.Fatal(err)
	}
}

func hcmOf(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	var h hcmv3.HttpConnectionManager
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	return &h
}

func tlsOf(t *testing.T, l *listenerv3.Listener) *tlsv3.DownstreamTlsContext {
	t.Helper()
	var tc tlsv3.DownstreamTlsContext
	if err := l.FilterChains[0].TransportSocket.GetTypedConfig().UnmarshalTo(&tc); err != nil {
		t.Fatal(err)
	}
	return &tc
}
