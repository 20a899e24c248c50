# The Gateway API Inference Extension's endpoint picker (EPP): its cmd/epp
# built from the module go.mod pins, at the version whose CRDs the
# gateway-api-inference-extension stack component installs. No chart: the
# advanced_inference_ingress check deploys one picker per InferencePool in
# its own namespace, with this image (spec.checks.inference.endpointPickerImage).
v=$(modversion sigs.k8s.io/gateway-api-inference-extension)
image epp "kaic.local/epp:$v" \
	-go sigs.k8s.io/gateway-api-inference-extension/cmd/epp=/epp \
	-ldflags "-X sigs.k8s.io/gateway-api-inference-extension/version.BuildRef=$v"
