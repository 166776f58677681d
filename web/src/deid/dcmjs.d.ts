// dcmjs ships no type declarations; the de-identification uses its data dictionary only.
declare module "dcmjs" {
  const dcmjs: unknown;
  export default dcmjs;
}
