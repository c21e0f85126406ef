package envoy

import (
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
)

// Untuned turns a bootstrap back into the hop sluice shipped before it was
// tuned — the verified claims as dynamic metadata that ext_proc attaches
// to every message, with two request attributes — so that `sluice bench`
// can measure what the tuning saves. Not for deployment.
func Untuned(b *bootstrapv3.Bootstrap) (*bootstrapv3.Bootstrap, error) {
	b = proto.Clone(b).(*bootstrapv3.Bootstrap)
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				if err := untuneHCM(f); err != nil {
					return nil, err
				}
			}
		}
	}
	return b, nil
}

func untuneHCM(f *listenerv3.Filter) error {
	var hcm hcmv3.HttpConnectionManager
	if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(&hcm) != nil {
		return nil
	}
	for _, hf := range hcm.HttpFilters {
		switch hf.Name {
		case "envoy.filters.http.jwt_authn":
			var j jwtv3.JwtAuthentication
			if err := hf.GetTypedConfig().UnmarshalTo(&j); err != nil {
				return fmt.Errorf("jwt_authn config: %w", err)
			}
			for _, p := range j.Providers {
				p.PayloadInMetadata = "jwt_payload"
			}
			hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&j)}
		case "envoy.filters.http.ext_proc":
			var e extprocv3.ExternalProcessor
			if err := hf.GetTypedConfig().UnmarshalTo(&e); err != nil {
				return fmt.Errorf("ext_proc config: %w", err)
			}
			e.MetadataOptions = &extprocv3.MetadataOptions{ForwardingNamespaces: &extprocv3.MetadataOptions_MetadataNamespaces{
				Untyped: []string{"envoy.filters.http.jwt_authn"},
			}}
			e.RequestAttributes = []string{"source.address", "connection.id"}
			hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&e)}
		}
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&hcm)}
	return nil
}
